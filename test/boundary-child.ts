/**
 * Scenarios of test/boundary.test.ts that may crash the process, run in a child process:
 *   node -r ts-node/register/transpile-only test/boundary-child.ts <scenario> [args...]
 * A scenario prints one JSON line on success; a crash shows as a signal or an unexpected exit code.
 */
import * as fs from 'fs'
import { Worker } from 'worker_threads'
import { createModel, loadTorchScript, Model, setNumThreads, SegtorchError, tensor, Tensor } from '../lib'

// Tiny models: a few channels, so that the scenarios take milliseconds per job.
export const UNET = { arch: 'unet', numClasses: 2, inChannels: 2, baseChannels: 4 } as const

type Images4 = Tensor<'float32', readonly [number, number, number, number]>

function images (n: number, h: number, w: number, seed = 1): Images4 {
  let s = seed
  const data = new Float32Array(n * 2 * h * w)
  for (let i = 0; i < data.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0
    data[i] = s / 4294967296 - 0.5
  }
  return tensor(data, [n, 2, h, w])
}

function masks (n: number, h: number, w: number): Tensor<'uint8', readonly [number, number, number]> {
  return tensor(new Uint8Array(n * h * w).map((_, i) => (i >> 3) & 1), [n, h, w])
}

function sameArray (a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function threads (): number {
  return fs.readdirSync('/proc/self/task').length
}

function out (value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n')
}

/** Keeps `model` busy: jobs that run one after the other on its thread (not awaited). */
function busy (model: Model, kind: string, jobs: number): void {
  const x = images(2, 128, 128)
  const y = masks(2, 128, 128)
  for (let i = 0; i < jobs; i++) {
    const p = kind === 'train' ? model.trainStep(x, y) : model.predict(x)
    p.catch(() => {})
  }
}

const scenarios: Record<string, (...args: string[]) => Promise<void>> = {
  // process.exit(code) while jobs run and are queued on a model's thread.
  async exit (kind: string, code: string, delay: string): Promise<void> {
    setNumThreads(1)
    const model = await createModel(UNET)
    await model.predict(images(1, 32, 32)) // warm
    busy(model, kind, 8)
    setTimeout(() => process.exit(Number(code)), Number(delay))
  },

  // Worker threads running jobs: some terminated from outside, one calling process.exit() itself,
  // then the main thread exits with `code` while its own job runs.
  async workers (code: string): Promise<void> {
    setNumThreads(1)
    const body = `
      const { parentPort, workerData } = require('worker_threads')
      const lib = ${JSON.stringify(require.resolve('../lib'))}
      if (lib.endsWith('.ts')) require('ts-node').register({ transpileOnly: true })
      const st = require(lib)
      ;(async () => {
        st.setNumThreads(1)
        const m = await st.createModel(${JSON.stringify(UNET)})
        const x = st.tensor(new Float32Array(2 * 2 * 96 * 96).fill(0.25), [2, 2, 96, 96])
        const y = st.tensor(new Uint8Array(2 * 96 * 96).fill(1), [2, 96, 96])
        await m.trainStep(x, y)
        parentPort.postMessage('ready')
        for (let i = 0; i < 6; i++) m.trainStep(x, y).catch(() => {})
        if (workerData.exit) setTimeout(() => process.exit(3), 5)
        setInterval(() => {}, 1000)
      })()`
    const start = (exit: boolean): Promise<{ worker: Worker, exited: Promise<number> }> => new Promise((resolve, reject) => {
      const worker = new Worker(body, { eval: true, workerData: { exit } })
      const exited = new Promise<number>((resolve) => worker.once('exit', resolve))
      worker.once('error', reject)
      worker.once('message', () => resolve({ worker, exited }))
    })
    const a = await start(false)
    const b = await start(false)
    const c = await start(true)
    await new Promise((resolve) => setTimeout(resolve, 10))
    await Promise.all([a.worker.terminate(), b.worker.terminate()])
    const codes = await Promise.all([a.exited, b.exited, c.exited])
    process.stderr.write(`worker exit codes ${JSON.stringify(codes)}\n`)
    if (codes[2] !== 3) process.exit(90)
    const model = await createModel(UNET)
    busy(model, 'train', 4)
    setTimeout(() => process.exit(Number(code)), 5)
  },

  // dispose() of a tensor that a queued job reads: the result of forward, used as the input of a
  // predict queued behind other jobs, disposed right after the call.
  async disposeQueued (): Promise<void> {
    const model = await createModel(UNET)
    const x = images(1, 192, 192)
    const y = await model.forward(x) // [1, 2, 192, 192] float32 in native memory (288 KiB)
    const expected = (await model.predict(tensor(y.dataSync().slice(), [1, 2, 192, 192]))).dataSync()
    const results: boolean[] = []
    for (let round = 0; round < 5; round++) {
      const logits = await model.forward(x)
      busy(model, 'predict', 3)
      const p = model.predict(logits as Images4)
      logits.dispose()
      const labels = await p
      results.push(sameArray(labels.dataSync(), expected))
    }
    out({ results, busyAfter: model.busy })
  },

  // Inputs over memory that can change under a running job: a resizable ArrayBuffer shrunk with
  // resize(0) while the job is queued, and a SharedArrayBuffer.
  async resizable (): Promise<void> {
    const model = await createModel(UNET)
    const n = 2 * 160 * 160
    const source = images(1, 160, 160).dataSync()
    const expected = (await model.predict(images(1, 160, 160))).dataSync()
    const results: Record<string, boolean> = {}
    for (const kind of ['fixed view of resizable', 'length-tracking view of resizable', 'shared', 'growable shared']) {
      const Ctor = kind.includes('shared') ? SharedArrayBuffer : ArrayBuffer
      const options = kind.includes('resizable') || kind.includes('growable') ? { maxByteLength: n * 8 } : undefined
      const buffer = new (Ctor as new (n: number, o?: { maxByteLength: number }) => ArrayBuffer)(n * 4, options)
      const data = kind.startsWith('length-tracking') ? new Float32Array(buffer) : new Float32Array(buffer, 0, n)
      data.set(source)
      const t = tensor(data, [1, 2, 160, 160])
      busy(model, 'predict', 3)
      const p = model.predict(t)
      if (kind.includes('resizable')) (buffer as unknown as { resize(n: number): void }).resize(0)
      else if (kind.includes('growable')) (buffer as unknown as { grow(n: number): void }).grow(n * 8)
      else data.fill(7) // another thread writing: the call reads the copy taken when it started
      results[kind] = sameArray((await p).dataSync(), expected)
    }
    // After resize(0) the tensor no longer fits its buffer: a RangeError, not a read past the end.
    const ab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(n * 4, { maxByteLength: n * 4 })
    const shrunk = tensor(new Float32Array(ab), [1, 2, 160, 160])
    ;(ab as unknown as { resize(n: number): void }).resize(0)
    let after = ''
    try {
      await model.predict(shrunk)
    } catch (err) {
      after = `${(err as Error).name}: ${(err as Error).message}`
    }
    out({ results, after })
  },

  // Thread count around create/dispose cycles of our models and of TorchScript models.
  async threads (cycles: string, script: string): Promise<void> {
    const x = images(1, 16, 16)
    const warm = await createModel(UNET)
    await warm.predict(x)
    warm.dispose()
    const before = threads()
    for (let i = 0; i < Number(cycles); i++) {
      const m = await createModel(UNET)
      await m.predict(x)
      m.dispose()
    }
    const afterModels = threads()
    let afterScripts = afterModels
    if (script !== '') {
      const rgb = tensor(new Float32Array(3 * 16 * 16), [1, 3, 16, 16])
      for (let i = 0; i < Number(cycles); i++) {
        const m = await loadTorchScript(script, { probeSize: 8 })
        await m.predict(rgb)
        m.dispose()
      }
      afterScripts = threads()
    }
    out({ before, afterModels, afterScripts })
  },

  // Corrupted TorchScript files, loaded one after the other: errors, never a crash.
  async loadScripts (...files: string[]): Promise<void> {
    const results: unknown[] = []
    for (const file of files) {
      try {
        const m = await loadTorchScript(file, { probeSize: 16 })
        await m.predict(tensor(new Float32Array(3 * 16 * 16), [1, 3, 16, 16])).catch(() => {})
        m.dispose()
        results.push({ loaded: true })
      } catch (err) {
        results.push({ loaded: false, segtorchError: err instanceof SegtorchError, name: (err as Error).name, message: (err as Error).message })
      }
    }
    out({ results })
  }
}

if (require.main === module) {
  const [scenario, ...args] = process.argv.slice(2)
  scenarios[scenario](...args).catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
    process.exit(99)
  })
}
