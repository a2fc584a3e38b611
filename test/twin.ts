/** Runs test/python/twin.py (Debian's python3-torchvision) to build a torchvision twin. */
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { backend, tensor, Tensor } from '../lib'
import { ROOT, tmpdir } from './helpers'

export const PYTHON = process.env.SEGTORCH_PYTHON ?? '/usr/bin/python3'

let available: string | undefined
/** Why torchvision cannot be used here, or '' when it can. */
export function torchvisionMissing (): string {
  if (available === undefined) {
    const r = spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { encoding: 'utf8' })
    available = r.status === 0 ? '' : `${PYTHON} cannot import torchvision (${(r.stderr || r.error?.message || '').trim().split('\n').pop()}); install python3-torchvision`
  }
  return available
}

export interface Twin {
  dir: string
  /** OrderedDict state dict, as torch.save(model.state_dict()) writes it. */
  state: string
  /** The same as a plain dict. */
  statePlain: string
  x: Tensor<'float32'>
  y: Float32Array
  params: number
  /** Tensors in the state dict. */
  keys: number
  shape: number[]
  /** Version of the PyTorch that computed the reference. */
  torch: string
  /** Input and output at every extra size asked for, by 'HxW'. */
  at: Record<string, { x: Tensor<'float32'>, y: Float32Array }>
  /** Inputs and outputs at the extra sizes asked of makeTwin, in order. */
  more: Array<{ h: number, w: number, x: Tensor<'float32'>, y: Float32Array }>
}

/** Major.minor of a version string ('1.13.0a0' -> '1.13'). */
export function minorVersion (v: string): string {
  return v.split('.').slice(0, 2).join('.')
}

/**
 * The parity limit: max abs difference <= 1e-4 when segtorch runs on the same libtorch as the
 * reference (Debian's 1.13, the case the tests are about). Against another libtorch (e.g. a 2.x
 * build checked by scripts/check-libtorch2.sh) kernels reduce in another order, so the limit is
 * fp32 reduction noise relative to the output's scale, 2e-5 x max |y|, and never below 2.5e-4:
 * PyTorch itself differs that much between versions. Measured 2026-12-05 (2 threads): the same
 * twins (state dict and input made by Debian's torch 1.13) evaluated by PyPI's torch 2.15 differ
 * from 1.13's logits by 1.34e-4 (deeplabv3_resnet101 at 64x96, max |y| 1.07), 8.3e-5
 * (fcn_resnet101), 2.5e-5 (deeplabv3_resnet50); segtorch built against 2.15 gives 2.15's logits
 * bit for bit (all six twins, forward and predict, SEGTORCH_PYTHON naming 2.15's python).
 */
export function parityTolerance (twin: Twin): number {
  if (minorVersion(backend().libtorch) === minorVersion(twin.torch)) return 1e-4
  let m = 0
  for (const v of twin.y) m = Math.max(m, Math.abs(v))
  const tol = Math.max(2.5e-4, 2e-5 * m)
  console.log(`      (libtorch ${backend().libtorch} vs reference torch ${twin.torch}: tolerance ${tol.toExponential(2)})`)
  return tol
}

function readF32 (file: string): Float32Array {
  const b = fs.readFileSync(file)
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
}

export function makeTwin (kind: string, h = 64, w = 96, more: Array<[number, number]> = []): Twin {
  const dir = tmpdir(`segtorch-twin-${kind}-`)
  const sizes = [[h, w], ...more].flat().map(String)
  const r = spawnSync(PYTHON, [path.join(ROOT, 'test', 'python', 'twin.py'), kind, dir, ...sizes],
    { encoding: 'utf8', env: { ...process.env, TWIN_THREADS: String(backend().threads) } })
  if (r.status !== 0) throw new Error(`twin.py ${kind} failed: ${r.stderr}`)
  const meta = JSON.parse(r.stdout.trim().split('\n').pop() as string)
  return {
    dir,
    state: path.join(dir, 'state.pt'),
    statePlain: path.join(dir, 'state_plain.pt'),
    x: tensor(readF32(path.join(dir, 'x.bin')), [1, 3, h, w]),
    y: readF32(path.join(dir, 'y.bin')),
    params: meta.params,
    keys: meta.keys,
    shape: meta.shape,
    torch: meta.torch ?? '',
    at: Object.fromEntries([[h, w], ...more].map(([a, b]) => [`${a}x${b}`, {
      x: tensor(readF32(path.join(dir, `x_${a}x${b}.bin`)), [1, 3, a, b]),
      y: readF32(path.join(dir, `y_${a}x${b}.bin`))
    }])),
    more: more.map(([eh, ew]) => ({
      h: eh,
      w: ew,
      x: tensor(readF32(path.join(dir, `x_${eh}x${ew}.bin`)), [1, 3, eh, ew]),
      y: readF32(path.join(dir, `y_${eh}x${ew}.bin`))
    }))
  }
}

export function maxAbsDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} vs ${b.length}`)
  let d = 0
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]))
  return d
}

/** Parameters (weights and biases, not running statistics) whose names start with prefix. */
export function countParameters (shapes: Record<string, number[]>, prefix = ''): number {
  let n = 0
  for (const [name, shape] of Object.entries(shapes)) {
    if (!name.startsWith(prefix) || /(running_mean|running_var|num_batches_tracked)$/.test(name)) continue
    n += shape.reduce((a, b) => a * b, 1)
  }
  return n
}
