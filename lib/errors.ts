/** Errors that segtorch raises besides TypeError and RangeError. */

/** A failure inside the native code (libtorch), with the C++ backtrace removed. */
export class SegtorchError extends Error {
  code: string
  constructor (message: string, code = 'ERR_SEGTORCH') {
    super(message)
    this.name = 'SegtorchError'
    this.code = code
  }
}

/**
 * A collective operation of distributed training failed or timed out (a rank died or hung, the
 * network failed, the models differ between ranks). The message names this rank, the operation
 * and, when it could tell, the rank that died.
 */
export class DistributedError extends SegtorchError {
  constructor (message: string) {
    super(message, 'ERR_SEGTORCH_DISTRIBUTED')
    this.name = 'DistributedError'
  }
}

/** The native addon could not be loaded (libtorch missing, another libtorch version, ...). */
export class SegtorchLoadError extends SegtorchError {
  constructor (message: string) {
    super(message, 'ERR_SEGTORCH_LOAD')
    this.name = 'SegtorchLoadError'
  }
}

function show (value: unknown): string {
  if (typeof value === 'string') return `'${value}'`
  if (typeof value === 'bigint') return `${value}n`
  if (value === undefined || value === null || typeof value === 'number' || typeof value === 'boolean') return String(value)
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as unknown as { length: number }).length})`
  if (typeof value === 'object') return value.constructor && value.constructor !== Object ? `a ${value.constructor.name}` : JSON.stringify(value)
  return typeof value
}

/** `Expected <what> for <name> but received <value>` as a TypeError. */
export function typeError (name: string, expected: string, value: unknown): TypeError {
  return new TypeError(`Expected ${expected} for ${name} but received ${show(value)}`)
}

/** `Expected <what> for <name> but received <value>` as a RangeError. */
export function rangeError (name: string, expected: string, value: unknown): RangeError {
  return new RangeError(`Expected ${expected} for ${name} but received ${show(value)}`)
}

/**
 * Runs a native call, giving the rejection a JS stack from the call site (captured before the
 * call) and turning plain native errors into SegtorchError.
 */
export async function withStack<T> (call: () => Promise<T>): Promise<T> {
  const site = new Error()
  try {
    return await call()
  } catch (err) {
    throw restack(err, site)
  }
}

export function restack (err: unknown, site: Error): unknown {
  if (!(err instanceof Error)) return err
  let e: Error = err
  if ((err as { code?: string }).code === 'ERR_SEGTORCH_NATIVE' && !(err instanceof SegtorchError)) {
    e = err.message.startsWith('distributed: ') ? new DistributedError(err.message) : new SegtorchError(err.message)
  }
  const frames = (site.stack ?? '').split('\n').slice(2).join('\n')
  e.stack = `${e.name}: ${e.message}\n${frames}`
  return e
}

/**
 * Image data that cannot be used as read: not an image format the decoder knows, empty, cut short,
 * corrupt, or (masks, depth maps) an image a label or depth decoder cannot take. `file` when it was
 * read from a file.
 */
export class ImageError extends SegtorchError {
  readonly file?: string
  constructor (message: string, code = 'ERR_SEGTORCH_IMAGE', file?: string) {
    super(file === undefined ? message : `${file}: ${message}`, code)
    this.name = 'ImageError'
    if (file !== undefined) this.file = file
  }
}

/** A PNG file that breaks the PNG specification (or that a label decoder cannot take), with the rule it breaks. */
export class PngError extends ImageError {
  constructor (message: string) {
    super(message, 'ERR_SEGTORCH_PNG')
    this.name = 'PngError'
  }
}

/** Input larger than a configured limit (for images: `limitInputPixels`), refused before any large allocation. */
export class LimitError extends SegtorchError {
  /** The limit in force and the value that exceeded it. */
  readonly limit: number
  readonly value: number
  constructor (message: string, limit: number, value: number) {
    super(message, 'ERR_SEGTORCH_LIMIT')
    this.name = 'LimitError'
    this.limit = limit
    this.value = value
  }
}

/** A path that cannot be used as asked: not a regular file (a FIFO, a device, a folder), or a folder that cannot be written. */
export class FileError extends SegtorchError {
  readonly path: string
  constructor (message: string, path: string) {
    super(message, 'ERR_SEGTORCH_FILE')
    this.name = 'FileError'
    this.path = path
  }
}
