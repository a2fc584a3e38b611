/**
 * One rank of the distributed tests (test/distributed.test.ts), started with torchrun's environment
 * by the test itself, by `segtorch launch` or by torchrun. argv[2]: the scenario as JSON. Writes
 * <out>/rank<R>.json (what happened) and <out>/rank<R>.pt (the final state dict).
 */
import * as fs from 'fs'
import * as path from 'path'
import { createModel, distributed, loadModel, Model, tensor } from '../../lib'
import { loader } from '../../lib/data/loader'
import type { Dataset, Sample } from '../../lib/data/datasets'
import type { StepInfo } from '../../lib/fit'

export interface Scenario {
  out: string
  /** A saved model every rank starts from; `freshOnRanks`: these ranks create a new random model instead (rank 0's weights must win). */
  init: string
  freshOnRanks?: number[]
  /** A different model on these ranks (mismatch detection). */
  otherModelOnRanks?: number[]
  samples: number
  /** Sample indices of the data set (default 0..samples-1): a single process given a padded order. */
  indices?: number[]
  size: number
  batchSize: number
  iterations?: number
  epochs?: number
  shuffle?: boolean
  distributed: boolean
  timeoutMs?: number
  lr?: number
  checkpointDir?: string
  resume?: string
  /** Milliseconds slept after each step (so that a test can kill a rank mid-run). */
  slowMs?: number
  /** Evaluate instead of training: samples of the evaluation set, and whether to shard it. */
  evaluate?: { samples: number, shard: boolean }
  /** This rank exits with code 3 after init (launcher test). */
  failRank?: number
  syncBatchNorm?: boolean
  /** The U-Net with batch norm (the init model must be one too). */
  batchNorm?: boolean
  /** Micro-batches per optimizer step (fit's accumulate). */
  accumulate?: number
  /** Gradient bucket size (fit's distributed.bucketMB). */
  bucketMB?: number
  /** On this rank, the images of this batch (0-based, in the run) are 3e38 (finite; the network overflows): a non-finite loss on one rank. */
  nanAt?: { rank: number, batch: number }
  /** On this rank, training step `step` keeps a finite loss but gets NaN gradients (SEGTORCH_TEST_NAN_GRADIENT). */
  nanGradientAt?: { rank: number, step: number }
  /** This rank aborts fit's AbortSignal in onStep after this step. */
  abortAt?: { rank: number, step: number }
  /** SIGINT aborts fit's AbortSignal (as segtorch train does on Ctrl-C). */
  abortOnSigint?: boolean
}

const CLASSES = ['a', 'b', 'c']

/** Sample i of a deterministic synthetic data set (labels follow the image, so training learns). */
function sample (i: number, size: number): Sample {
  const image = new Uint8Array(size * size * 3)
  const mask = new Uint8Array(size * size)
  let s = (i * 2654435761) >>> 0
  const r = (): number => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296 }
  for (let p = 0; p < size * size; p++) {
    const k = Math.floor(r() * 3)
    mask[p] = k
    for (let c = 0; c < 3; c++) image[p * 3 + c] = Math.floor(k * 60 + r() * 120 + c * 10)
  }
  return { image, mask, width: size, height: size, channels: 3, file: `sample-${i}` }
}

export function dataset (n: number, size: number, indices?: number[]): Dataset {
  const order = indices ?? Array.from({ length: n }, (_, i) => i)
  return {
    classes: CLASSES,
    palette: [[0, 0, 0], [255, 0, 0], [0, 255, 0]],
    ignoreIndex: 255,
    length: order.length,
    get: async (i: number) => sample(order[i], size)
  }
}

async function main (): Promise<void> {
  const s = JSON.parse(process.argv[2]) as Scenario
  const rank = Number(process.env.RANK ?? 0)
  if (s.nanGradientAt?.rank === rank) process.env.SEGTORCH_TEST_NAN_GRADIENT = String(s.nanGradientAt.step)
  const report: Record<string, unknown> = { rank, pid: process.pid }
  const write = (): void => fs.writeFileSync(path.join(s.out, `rank${rank}.json`), JSON.stringify(report))
  let model: Model | undefined
  try {
    if (s.distributed) {
      const g = await distributed.init({ timeoutMs: s.timeoutMs ?? 30000 })
      report.worldSize = g.worldSize
      report.backend = g.backend
      report.rendezvous = g.rendezvous
      if (s.failRank === rank) {
        write()
        process.exit(3)
      }
    }
    if (s.otherModelOnRanks?.includes(rank)) model = await createModel({ arch: 'unet', numClasses: 4, baseChannels: 4, dropout: 0 })
    else if (s.freshOnRanks?.includes(rank)) model = await createModel({ arch: 'unet', numClasses: 3, baseChannels: 4, dropout: 0, batchNorm: s.batchNorm ?? false })
    else model = await loadModel(s.init)
    if (s.evaluate) {
      const ev = dataset(s.evaluate.samples, s.size)
      const shard = s.evaluate.shard ? { shard: { rank: distributed.rank, worldSize: distributed.worldSize, pad: false } } : {}
      const e = await model.evaluate(loader(ev, { batchSize: 1, ...shard }))
      report.mIoU = e.mIoU
      report.pixelAccuracy = e.pixelAccuracy
      report.images = e.images
      report.confusion = Array.from(e.confusion.dataSync(), Number)
    } else {
      const data = loader(dataset(s.samples, s.size, s.indices), { batchSize: s.batchSize, shuffle: s.shuffle ?? false, seed: 5, ...(s.distributed ? { shard: 'auto' as const } : {}) })
      const files: string[][] = []
      let batches = 0
      const source = {
        get length () { return data.length as number },
        async * [Symbol.asyncIterator] () {
          for await (const b of data) {
            files.push(b.files)
            if (s.nanAt?.rank === rank && s.nanAt.batch === batches++) {
              yield { ...b, images: tensor(new Float32Array(b.images.shape.reduce((a, v) => a * v, 1)).fill(3e38), b.images.shape) }
            } else {
              yield b
            }
          }
        }
      }
      const controller = new AbortController()
      if (s.abortOnSigint) process.on('SIGINT', () => { report.sigint = true; controller.abort() })
      const losses: number[] = []
      const h = await model.fit(source, {
        iterations: s.iterations,
        epochs: s.epochs,
        optimizer: { type: 'sgd', lr: s.lr ?? 0.05, momentum: 0.9 },
        precision: 'fp32',
        channelsLast: false,
        distributed: s.distributed ? { timeoutMs: s.timeoutMs ?? 30000, syncBatchNorm: s.syncBatchNorm ?? false, ...(s.bucketMB !== undefined ? { bucketMB: s.bucketMB } : {}) } : false,
        accumulate: s.accumulate ?? 1,
        signal: s.abortAt !== undefined || s.abortOnSigint === true ? controller.signal : undefined,
        checkpointDir: s.checkpointDir,
        resume: s.resume,
        onStep: async (info: StepInfo) => {
          if (s.abortAt?.rank === rank && s.abortAt.step === info.step) controller.abort()
          losses.push(info.loss)
          report.ranks = [...((report.ranks as number[] | undefined) ?? []), info.rank]
          process.stdout.write(`rank ${rank} step ${info.step}\n`)
          if (s.slowMs) await new Promise((resolve) => setTimeout(resolve, s.slowMs))
        }
      })
      report.losses = losses
      report.steps = h.steps
      report.stopped = h.stopped
      report.files = files
      report.stats = distributed.stats()
    }
    await model.saveStateDict(path.join(s.out, `rank${rank}.pt`))
    model.dispose()
    await distributed.destroy()
    write()
  } catch (err) {
    report.error = { name: (err as Error).name, message: (err as Error).message }
    // What a failed run leaves: the tests check that a failed step changed nothing.
    if (model) await model.saveStateDict(path.join(s.out, `rank${rank}-failed.pt`)).catch(() => undefined)
    write()
    process.stderr.write(`rank ${rank}: ${(err as Error).name}: ${(err as Error).message}\n`)
    process.exit(1)
  }
}

void main()
