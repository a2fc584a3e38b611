/** Option validation helpers: every option is checked here before it reaches native code. */
import { rangeError, typeError } from './errors'

export function isPlainObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v)
}

/** Rejects keys not in `allowed` (catches option typos such as `lr_rate`). */
export function checkKeys (where: string, options: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw new TypeError(`Unknown option '${key}' in ${where}: expected one of ${allowed.join(', ')}`)
    }
  }
}

export function optionsObject (where: string, v: unknown): Record<string, unknown> {
  if (v === undefined) return {}
  if (!isPlainObject(v)) throw typeError(where, 'an options object', v)
  return v
}

export function integer (name: string, v: unknown, min = -Infinity, max = Infinity): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw typeError(name, 'an integer', v)
  if (v < min || v > max) {
    const range = max === Infinity ? `an integer >= ${min}` : `an integer between ${min} and ${max}`
    throw rangeError(name, range, v)
  }
  return v
}

export function number (name: string, v: unknown, min = -Infinity, max = Infinity, exclusiveMin = false): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw typeError(name, 'a number', v)
  if (v < min || v > max || (exclusiveMin && v === min) || !Number.isFinite(v)) {
    const lo = exclusiveMin ? `> ${min}` : `>= ${min}`
    throw rangeError(name, max === Infinity ? `a finite number ${lo}` : `a number ${lo} and <= ${max}`, v)
  }
  return v
}

export function boolean (name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw typeError(name, 'a boolean', v)
  return v
}

export function oneOf<T extends string | number> (name: string, v: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) {
    const err = typeof v === typeof allowed[0] ? rangeError : typeError
    throw err(name, `one of ${allowed.map((a) => typeof a === 'string' ? `'${a}'` : String(a)).join(', ')}`, v)
  }
  return v as T
}

export function string (name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) throw typeError(name, 'a non-empty string', v)
  return v
}

export function numberArray (name: string, v: unknown, length: number): number[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
    throw typeError(name, 'an array of finite numbers', v)
  }
  if (v.length !== length) throw rangeError(name, `${length} numbers`, v)
  return v as number[]
}

export function device (name: string, v: unknown): string {
  if (typeof v !== 'string' || !/^(cpu|cuda(:\d+)?)$/.test(v)) {
    throw (typeof v === 'string' ? rangeError : typeError)(name, "'cpu', 'cuda' or 'cuda:N'", v)
  }
  return v
}
