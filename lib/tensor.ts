/** Typed tensors: dtype and shape in the type, data in JS memory or on a device. */
import { binding, NativeTensor } from './binding'
import { rangeError, typeError, withStack } from './errors'

export type DType = 'float32' | 'float16' | 'bfloat16' | 'int32' | 'int64' | 'uint8' | 'bool'

/** The TypedArray that holds each dtype. float16 and bfloat16 are raw 16-bit patterns. */
export interface DataTypeMap {
  float32: Float32Array
  float16: Uint16Array
  bfloat16: Uint16Array
  int32: Int32Array
  int64: BigInt64Array
  uint8: Uint8Array
  bool: Uint8Array
}

export type Shape = readonly number[]
export type TypedArray = DataTypeMap[DType]
export type Device = 'cpu' | 'cuda' | `cuda:${number}`

const ARRAY_TYPES: { [D in DType]: new (buffer: ArrayBufferLike, byteOffset?: number, length?: number) => DataTypeMap[D] } = {
  float32: Float32Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  bool: Uint8Array
}
const DTYPES = Object.keys(ARRAY_TYPES) as DType[]

function numel (shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1)
}

/** Whether `buffer` is a plain ArrayBuffer that cannot change length (not shared, not resizable). */
function fixedLength (buffer: ArrayBufferLike): boolean {
  if (Object.prototype.toString.call(buffer) !== '[object ArrayBuffer]') return false // SharedArrayBuffer
  return (buffer as { resizable?: boolean }).resizable !== true
}

const disposeSymbol: symbol = (Symbol as unknown as { dispose?: symbol }).dispose ?? Symbol.for('nodejs.dispose')

export class Tensor<D extends DType = DType, S extends Shape = Shape> {
  readonly dtype: D
  readonly shape: S
  readonly device: string
  #data: DataTypeMap[D] | undefined
  #handle: unknown // device tensors; CPU results: the native tensor behind #data, what native calls read
  #owned: ArrayBuffer | undefined // native memory behind #data, freed by dispose()
  #disposed = false

  /** @internal use tensor() or the results of model calls */
  constructor (dtype: D, shape: S, device: string, data: DataTypeMap[D] | undefined, handle: unknown, owned?: ArrayBuffer) {
    this.dtype = dtype
    this.shape = Object.freeze([...shape]) as unknown as S
    this.device = device
    this.#data = data
    this.#handle = handle
    this.#owned = owned
  }

  /** @internal wraps what native code returned */
  static fromNative<D extends DType, S extends Shape> (t: NativeTensor): Tensor<D, S> {
    const dtype = t.dtype as D
    if (t.buffer !== undefined) {
      const Ctor = ARRAY_TYPES[dtype]
      const data = new Ctor(t.buffer, 0, numel(t.shape)) as DataTypeMap[D]
      return new Tensor<D, S>(dtype, t.shape as unknown as S, 'cpu', data, t.handle, t.buffer)
    }
    return new Tensor<D, S>(dtype, t.shape as unknown as S, t.device ?? 'cpu', undefined, t.handle)
  }

  /** Number of elements. */
  get size (): number {
    return numel(this.shape)
  }

  get disposed (): boolean {
    return this.#disposed
  }

  #check (): void {
    if (this.#disposed) throw new Error('this tensor was disposed')
  }

  /**
   * @internal what native calls receive. Native memory is passed by handle: the call holds the
   * native tensor, so dispose() during the call frees it when the call ends. JS memory is passed
   * as it is (the call keeps the array alive), except views of a SharedArrayBuffer or of a
   * resizable ArrayBuffer, copied here: another thread or a resize() could change or free that
   * memory while the call reads it.
   */
  _native (): NativeTensor {
    this.#check()
    const shape = this.shape as unknown as number[]
    if (this.#data === undefined) return { dtype: this.dtype, shape, handle: this.#handle }
    if (this.#handle !== undefined) return { dtype: this.dtype, shape, data: this.#data, handle: this.#handle }
    let data: TypedArray = this.#data
    if (!fixedLength(data.buffer)) {
      if (data.length !== this.size) {
        throw new RangeError(`Expected data of length ${this.size} for shape [${shape.join(', ')}] but its resizable buffer now holds length ${data.length}`)
      }
      data = data.slice() // a fresh, fixed-length ArrayBuffer
    }
    return { dtype: this.dtype, shape, data }
  }

  /** The values as the dtype's TypedArray (copied from the device if needed). */
  async data (): Promise<DataTypeMap[D]> {
    this.#check()
    if (this.#data !== undefined) return this.#data
    const cpu = await withStack(() => binding.toDevice(this._native(), 'cpu'))
    return Tensor.fromNative<D, S>(cpu).#data as DataTypeMap[D]
  }

  /** The values, synchronously. For device tensors this blocks the JS thread during the copy. */
  dataSync (): DataTypeMap[D] {
    this.#check()
    if (this.#data !== undefined) return this.#data
    return Tensor.fromNative<D, S>(binding.toCpuSync(this._native())).#data as DataTypeMap[D]
  }

  /** A copy on another device ('cpu', 'cuda', 'cuda:N'). */
  async to (device: Device): Promise<Tensor<D, S>> {
    this.#check()
    if (typeof device !== 'string' || !/^(cpu|cuda(:\d+)?)$/.test(device)) {
      throw (typeof device === 'string' ? rangeError : typeError)('device', "'cpu', 'cuda' or 'cuda:N'", device)
    }
    const out = await withStack(() => binding.toDevice(this._native(), device))
    return Tensor.fromNative<D, S>(out)
  }

  /**
   * Frees native memory now instead of at garbage collection. The tensor is unusable after. A
   * native call still queued or running with this tensor as input keeps its memory until the
   * call ends (the memory is freed then); a tensor over your own TypedArray only lets it go.
   */
  dispose (): void {
    if (this.#disposed) return
    this.#disposed = true
    if (this.#handle !== undefined) binding.releaseHandle(this.#handle)
    if (this.#owned !== undefined) binding.detachBuffer(this.#owned)
    this.#data = undefined
    this.#handle = undefined
    this.#owned = undefined
  }

  [Symbol.dispose] (): void {
    this.dispose()
  }

  toString (): string {
    return `Tensor<${this.dtype}>[${this.shape.join(', ')}] on ${this.device}`
  }
}

if (disposeSymbol !== Symbol.dispose) {
  (Tensor.prototype as unknown as Record<symbol, unknown>)[disposeSymbol] = Tensor.prototype.dispose
}

type DefaultDType<A> =
  A extends Float32Array ? 'float32'
    : A extends Int32Array ? 'int32'
      : A extends BigInt64Array ? 'int64'
        : A extends Uint8Array ? 'uint8'
          : never

type DTypeFor<A> = { [D in DType]: DataTypeMap[D] extends A ? (A extends DataTypeMap[D] ? D : never) : never }[DType]

/**
 * Wraps a TypedArray as a tensor without copying: native code reads the same memory, and the array
 * is kept alive while native work uses it. Views of a SharedArrayBuffer or of a resizable
 * ArrayBuffer are accepted but copied when each native call starts (the call reads the copy), so
 * that another thread or a resize() cannot change or free memory under a running call. Do not
 * transfer (postMessage with a transfer list) the buffer of an array while a call that reads it
 * is pending.
 *
 * The dtype defaults from the array type (Float32Array -> float32, Int32Array -> int32,
 * BigInt64Array -> int64, Uint8Array -> uint8); Uint16Array needs 'float16' or 'bfloat16', and a
 * Uint8Array may be 'bool'.
 */
export function tensor<A extends Float32Array | Int32Array | BigInt64Array | Uint8Array, const S extends Shape> (data: A, shape: S): Tensor<DefaultDType<A>, S>
export function tensor<A extends TypedArray, D extends DTypeFor<A>, const S extends Shape> (data: A, shape: S, dtype: D): Tensor<D, S>
export function tensor (data: TypedArray, shape: Shape, dtype?: DType): Tensor {
  if (!ArrayBuffer.isView(data) || data instanceof DataView) throw typeError('data', 'a TypedArray', data)
  if (!Array.isArray(shape) || shape.some((d) => typeof d !== 'number' || !Number.isInteger(d) || d < 0)) {
    throw typeError('shape', 'an array of non-negative integers', shape)
  }
  let d: DType
  if (dtype === undefined) {
    if (data instanceof Float32Array) d = 'float32'
    else if (data instanceof Int32Array) d = 'int32'
    else if (data instanceof BigInt64Array) d = 'int64'
    else if (data instanceof Uint8Array) d = 'uint8'
    else if (data instanceof Uint16Array) throw new TypeError("Expected a dtype ('float16' or 'bfloat16') for a Uint16Array but received none")
    else throw typeError('data', 'a Float32Array, Uint16Array, Int32Array, BigInt64Array or Uint8Array', data)
  } else {
    if (!DTYPES.includes(dtype)) throw rangeError('dtype', DTYPES.map((x) => `'${x}'`).join(', '), dtype)
    d = dtype
    const Ctor = ARRAY_TYPES[d]
    if (!(data instanceof Ctor) || (d === 'uint8' && data instanceof Uint8ClampedArray)) {
      throw typeError('data', `a ${Ctor.name} for dtype '${d}'`, data)
    }
  }
  const n = numel(shape)
  if (data.length !== n) {
    throw new RangeError(`Expected data of length ${n} for shape [${shape.join(', ')}] but received length ${data.length}`)
  }
  return new Tensor(d, shape, 'cpu', data as DataTypeMap[DType], undefined)
}

/** A float32 or uint8 tensor of zeros, mostly for tests and examples. */
export function zeros<D extends 'float32' | 'uint8' | 'int32' | 'int64', const S extends Shape> (shape: S, dtype: D): Tensor<D, S> {
  const Ctor = ARRAY_TYPES[dtype]
  return tensor(new Ctor(new ArrayBuffer(numel(shape) * (Ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT)) as TypedArray, shape, dtype as DType) as unknown as Tensor<D, S>
}
