/** The tensors a model takes: image and mask batches, and their checks (made once per call). */
import { typeError } from './errors'
import { DType, Tensor } from './tensor'

export type ImageDType = 'uint8' | 'float32' | 'float16' | 'bfloat16'
export type MaskDType = 'uint8' | 'int32' | 'int64'
export type Images<N extends number = number, H extends number = number, W extends number = number> =
  Tensor<ImageDType, readonly [N, number, H, W]>
export type Masks = Tensor<MaskDType, readonly [number, number, number]>

export function checkImages (name: string, images: unknown, inChannels: number): Tensor {
  if (!(images instanceof Tensor)) throw typeError(name, 'a segtorch Tensor', images)
  if (images.disposed) throw new TypeError(`Expected a live Tensor for ${name} but received a disposed one`)
  if (images.shape.length !== 4) throw new RangeError(`Expected ${name} of shape [N, C, H, W] but received shape [${images.shape.join(', ')}]`)
  const [n, c, h, w] = images.shape
  if (c !== inChannels) throw new RangeError(`Expected ${name} with ${inChannels} channel(s) (shape [N, ${inChannels}, H, W]) but received shape [${images.shape.join(', ')}]`)
  if (n < 1 || h < 1 || w < 1) throw new RangeError(`Expected non-empty ${name} but received shape [${images.shape.join(', ')}]`)
  const ok: DType[] = ['uint8', 'float32', 'float16', 'bfloat16']
  if (!ok.includes(images.dtype)) throw typeError(`${name} dtype`, "'uint8', 'float32', 'float16' or 'bfloat16'", images.dtype)
  return images
}

export function checkMasks (masks: unknown, images: Tensor): Tensor {
  if (!(masks instanceof Tensor)) throw typeError('masks', 'a segtorch Tensor', masks)
  if (masks.disposed) throw new TypeError('Expected a live Tensor for masks but received a disposed one')
  const ok: DType[] = ['uint8', 'int32', 'int64']
  if (!ok.includes(masks.dtype)) throw typeError('masks dtype', "'uint8', 'int32' or 'int64'", masks.dtype)
  const [n, , h, w] = images.shape
  const s = masks.shape
  if (s.length !== 3 || s[0] !== n || s[1] !== h || s[2] !== w) {
    throw new RangeError(`Expected masks of shape [${n}, ${h}, ${w}] to match images [${images.shape.join(', ')}] but received [${s.join(', ')}]`)
  }
  return masks
}

export function checkDepth (depth: unknown, images: Tensor): Tensor {
  if (!(depth instanceof Tensor)) throw typeError('depth', 'a segtorch Tensor', depth)
  const [n, , h, w] = images.shape
  const s = depth.shape
  const ok = (s.length === 3 && s[0] === n && s[1] === h && s[2] === w) || (s.length === 4 && s[0] === n && s[1] === 1 && s[2] === h && s[3] === w)
  if (!ok) throw new RangeError(`Expected depth of shape [${n}, ${h}, ${w}] or [${n}, 1, ${h}, ${w}] but received [${s.join(', ')}]`)
  if (depth.dtype !== 'float32' && depth.dtype !== 'uint8' && depth.dtype !== 'int32') throw typeError('depth dtype', "'float32'", depth.dtype)
  return depth
}
