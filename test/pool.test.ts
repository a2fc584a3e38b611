// Inference max pooling (native/blocks/max_pool.h): segtorch's separable kernel must give ATen's
// max_pool2d values bit for bit (a maximum is one of its inputs), NaN and infinities included, for
// every kernel / stride / padding ATen accepts, float32 and bfloat16, contiguous and channels-last;
// and whole predictions must not change when SEGTORCH_POOL_KERNEL=0 puts ATen's back.
import * as assert from 'assert'
import * as path from 'path'
import { ModelOptions, tensor, Tensor } from '../lib'
import { binding } from '../lib/binding'
import { PredictionSetting, rng, runPredictionCases, savePredictionCases, tmpdir } from './helpers'

type Pool = { kernel: number, stride: number, padding: number, bf16: boolean, channelsLast: boolean }

async function pool (x: Tensor, p: Pool, aten: boolean): Promise<Float32Array> {
  const y = Tensor.fromNative(await binding._maxPool2d(x._native(), p.kernel, p.stride, p.padding, p.bf16, p.channelsLast, aten))
  return y.dataSync() as Float32Array
}

/** Values with ties (a few distinct levels), NaN and infinities at a few places. */
function input (n: number, c: number, h: number, w: number, seed: number, specials: boolean): Tensor {
  const r = rng(seed)
  const data = new Float32Array(n * c * h * w).map(() => Math.round(r() * 16 - 8) / 4 + (r() < 0.5 ? 0 : r() * 1e-3))
  if (specials) {
    for (let i = 0; i < data.length; i += 37) data[i] = Number.NaN
    for (let i = 11; i < data.length; i += 53) data[i] = Number.NEGATIVE_INFINITY
    for (let i = 23; i < data.length; i += 71) data[i] = Number.POSITIVE_INFINITY
  }
  return tensor(data, [n, c, h, w])
}

function sameBits (a: Float32Array, b: Float32Array, what: string): void {
  assert.strictEqual(a.length, b.length, `${what}: ${a.length} values against ${b.length}`)
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) && Number.isNaN(b[i])) continue
    if (!Object.is(a[i], b[i])) assert.fail(`${what}: value ${i} is ${a[i]}, ATen's ${b[i]}`)
  }
}

describe('inference max pooling (segtorch kernel against ATen)', () => {
  it('every kernel 1-5, stride 1-3 and padding up to kernel/2, both types and layouts, NaN and infinities: bit-identical', async () => {
    let cases = 0
    for (const [c, h, w] of [[1, 9, 13], [3, 7, 6], [17, 11, 5]]) {
      for (const specials of [false, true]) {
        const x = input(2, c, h, w, 7 + c + (specials ? 100 : 0), specials)
        for (let kernel = 1; kernel <= 5; kernel++) {
          for (let stride = 1; stride <= 3; stride++) {
            for (let padding = 0; 2 * padding <= kernel; padding++) {
              if (Math.min(h, w) + 2 * padding < kernel) continue
              for (const bf16 of [false, true]) {
                for (const channelsLast of [false, true]) {
                  const p = { kernel, stride, padding, bf16, channelsLast }
                  sameBits(await pool(x, p, false), await pool(x, p, true), `${JSON.stringify(p)} on 2x${c}x${h}x${w}${specials ? ' with NaN / inf' : ''}`)
                  cases++
                }
              }
            }
          }
        }
      }
    }
    assert.ok(cases > 400, `${cases} cases`)
  })

  it('NaN of either sign wins its windows, as in ATen\'s (the one-pass kernel orders bits as integers)', async () => {
    const x = input(1, 19, 12, 10, 5, false)
    const data = x.dataSync() as Float32Array
    const bits = new Uint32Array(data.buffer, data.byteOffset, data.length)
    for (let i = 3; i < bits.length; i += 41) bits[i] = 0xffc00000 // -NaN: the sign bit set
    for (let i = 17; i < bits.length; i += 59) bits[i] = 0x7fa00000 // a NaN with another payload
    const y = tensor(data, [1, 19, 12, 10])
    for (const [kernel, padding] of [[3, 1], [5, 2], [1, 0]]) {
      for (const bf16 of [false, true]) {
        for (const channelsLast of [false, true]) {
          const p = { kernel, stride: 1, padding, bf16, channelsLast }
          const ours = await pool(y, p, false)
          assert.ok(ours.some(Number.isNaN), `${JSON.stringify(p)}: NaN expected in the output`)
          sameBits(ours, await pool(y, p, true), `${JSON.stringify(p)} with -NaN`)
        }
      }
    }
  })

  it('large enough to be split between threads (RefineNet\'s 5x5 stride 1, ResNet\'s 3x3 stride 2, 2x2 stride 2)', async () => {
    const x = input(2, 64, 41, 57, 3, true)
    for (const [kernel, stride, padding] of [[5, 1, 2], [3, 2, 1], [2, 2, 0]]) {
      for (const bf16 of [false, true]) {
        for (const channelsLast of [false, true]) {
          const p = { kernel, stride, padding, bf16, channelsLast }
          sameBits(await pool(x, p, false), await pool(x, p, true), JSON.stringify(p))
        }
      }
    }
  })
})

// Whole predictions with ATen's pooling (a child with SEGTORCH_POOL_KERNEL=0: the switch is read once
// per process) against this process's: the same saved models, the same inputs, identical logits.
describe('inference max pooling in predict', () => {
  // fp32 channels-last too: on CPUs without AVX-512 its stride-1 poolings run segtorch's kernel.
  const settings: PredictionSetting[] = [
    { precision: 'fp32', channelsLast: false }, { precision: 'fp32', channelsLast: true }, { precision: 'bf16', channelsLast: true }]
  const cases: ModelOptions[] = [
    { arch: 'lwrefinenet', backbone: 'mobilenetv2', numClasses: 3 }, // chained residual pooling, 5x5 stride 1
    { arch: 'deeplabv3', backbone: 'resnet18', numClasses: 3, outputStride: 16 }, // ResNet stem, 3x3 stride 2
    { arch: 'unet', numClasses: 2, baseChannels: 8 } as ModelOptions, // 2x2 stride 2
    { arch: 'fcn', backbone: 'vgg16', numClasses: 3, fcChannels: 64 } as ModelOptions // VGG's pooling modules (fc6 / fc7 narrow: 4096 wrote a 0.5 GB file)
  ]

  it('SEGTORCH_POOL_KERNEL=0 (ATen\'s pooling) gives the same logits, fp32 in both layouts and bf16 channels-last, at an odd size', async function () {
    const dir = tmpdir()
    const ours = await savePredictionCases(dir, cases, 60, { settings })
    const { logits: theirs } = runPredictionCases(dir, cases.length, { SEGTORCH_POOL_KERNEL: '0' }, settings)
    for (const [k, options] of cases.entries()) {
      for (const [j, s] of settings.entries()) {
        const i = settings.length * k + j
        sameBits(ours[i], Float32Array.from(theirs[i]), `${options.arch}/${options.backbone ?? 'none'} ${s.precision}${s.channelsLast ? ' channels-last' : ''}`)
      }
    }
  })
})
