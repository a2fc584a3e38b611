import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { Backend, createModel, Model, ModelOptions, PredictOptions, tensor, Tensor } from '../lib'
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { distCurrent } = require('./dist-current') as { distCurrent: () => boolean }

/** Deterministic pseudo-random numbers (tests must not flake). */
export function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 4294967296
  }
}

export function randomImages (n: number, c: number, h: number, w: number, seed = 1): Tensor<'float32', readonly [number, number, number, number]> {
  const r = rng(seed)
  return tensor(new Float32Array(n * c * h * w).map(() => r() * 2 - 1), [n, c, h, w])
}

export function randomMasks (n: number, h: number, w: number, k: number, seed = 2): Tensor<'uint8', readonly [number, number, number]> {
  const r = rng(seed)
  return tensor(new Uint8Array(n * h * w).map(() => Math.floor(r() * k)), [n, h, w])
}

// Temporary folders of this test process, removed when it exits: the suite writes models of up to
// 0.5 GB, and runs that leave them behind fill the disk of a machine that tests repeatedly.
const created: string[] = []
process.on('exit', () => {
  for (const dir of created) fs.rmSync(dir, { recursive: true, force: true })
})

export function tmpdir (prefix = 'segtorch-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  created.push(dir)
  return dir
}

export async function rejects (p: Promise<unknown>, type: Function, pattern: RegExp): Promise<Error> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof type, `expected ${type.name} but got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
    assert.match((err as Error).message, pattern)
    assert.doesNotMatch((err as Error).message, /Exception raised from|frame #\d/, 'no C++ backtrace in messages')
    return err as Error
  }
  assert.fail(`expected a ${type.name} matching ${pattern}`)
}

export const ROOT = path.join(__dirname, '..')

/** `node -r CHILD_REGISTER script.ts`: a child process's TypeScript, with lib/ from dist/ when current (see the file). */
export const CHILD_REGISTER = path.join(ROOT, 'test', 'child-register.js')

/**
 * The node arguments that run segtorch's command line in a child process: dist/cli/index.js (what
 * the package's bin runs; `npm test` builds dist/ first) when dist/ is current, else the TypeScript
 * source through ts-node (mocha run on changed sources without a build), which transpiles all of
 * lib/ at every start (about 2.5 s a process on a 2-core machine).
 */
export const CLI_ARGS: readonly string[] = distCurrent()
  ? [path.join(ROOT, 'dist', 'cli', 'index.js')]
  : ['-r', require.resolve('ts-node/register/transpile-only'), path.join(ROOT, 'lib', 'cli', 'index.ts')]

/** One way to predict in savePredictionCases / runPredictionCases (their output is always 'logits'). */
export type PredictionSetting = Omit<PredictOptions, 'output'>
/** savePredictionCases' default settings: fp32 contiguous and bf16 channels-last. */
export const PREDICTION_SETTINGS: readonly PredictionSetting[] = [{ precision: 'fp32', channelsLast: false }, { precision: 'bf16', channelsLast: true }]

export interface PredictionCaseOptions {
  /** Run on each model before it is saved (e.g. to give its BatchNorms statistics). */
  prepare?: (model: Model) => Promise<void>
  /** How this process predicts (default PREDICTION_SETTINGS). */
  settings?: readonly PredictionSetting[]
  /** The input's [height, width] (default 61 x 75: odd, not a multiple of any stride). */
  size?: readonly [number, number]
}

/**
 * For comparing predictions across processes (a switch read once per process): creates each model,
 * runs `prepare` on it, saves it and a 1x3xHxW input (seed `seed + k`) in `dir` as m<k>.segtorch /
 * x<k>.json, and returns its logits for each of `settings`, in that order per model.
 */
export async function savePredictionCases (dir: string, cases: ModelOptions[], seed: number,
  { prepare, settings = PREDICTION_SETTINGS, size = [61, 75] }: PredictionCaseOptions = {}): Promise<Float32Array[]> {
  const ours: Float32Array[] = []
  for (const [k, options] of cases.entries()) {
    const model = await createModel(options)
    try {
      if (prepare) await prepare(model)
      const x = randomImages(1, 3, size[0], size[1], seed + k)
      await model.save(path.join(dir, `m${k}.segtorch`))
      fs.writeFileSync(path.join(dir, `x${k}.json`), JSON.stringify({ data: Array.from(x.dataSync()), shape: x.shape }))
      for (const s of settings) ours.push((await model.predict(x, { ...s, output: 'logits' })).dataSync() as Float32Array)
    } finally {
      model.dispose()
    }
  }
  return ours
}

/**
 * The other side of savePredictionCases: a child process with `env` added (switches are read once
 * per process) loads the `n` models saved in `dir` and predicts each one's input with each of
 * `settings`. Returns its logits (in savePredictionCases' order) and its backend().
 */
export function runPredictionCases (dir: string, n: number, env: Record<string, string>,
  settings: readonly PredictionSetting[] = PREDICTION_SETTINGS): { logits: number[][], backend: Backend } {
  const script = `
    const fs = require('fs')
    const { backend, loadModel, tensor } = require(${JSON.stringify(path.join(ROOT, 'lib'))})
    ;(async () => {
      const [dir, n] = process.argv.slice(1)
      const logits = []
      for (let k = 0; k < Number(n); k++) {
        const m = await loadModel(dir + '/m' + k + '.segtorch')
        const x = JSON.parse(fs.readFileSync(dir + '/x' + k + '.json', 'utf8'))
        for (const s of ${JSON.stringify(settings)}) {
          const y = await m.predict(tensor(Float32Array.from(x.data), x.shape), { ...s, output: 'logits' })
          logits.push(Array.from(y.dataSync()))
        }
        m.dispose()
      }
      fs.writeFileSync(dir + '/out.json', JSON.stringify({ logits, backend: backend() }))
    })().catch((e) => { console.error(e); process.exit(1) })`
  const child = spawnSync(process.execPath, ['-r', CHILD_REGISTER, '-e', script, dir, String(n)],
    { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env } })
  assert.strictEqual(child.status, 0, child.stderr)
  return JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8'))
}

/** The largest |value| of `a` (0 when empty). */
/** The nearest bfloat16 values (round to nearest even), as float32. */
export function toBf16 (v: Float32Array): Float32Array {
  const out = new Float32Array(v.length)
  const bits = new Uint32Array(out.buffer)
  const src = new Uint32Array(new Float32Array(v).buffer)
  for (let i = 0; i < v.length; i++) {
    const u = src[i]
    bits[i] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16
  }
  return out
}

export function maxAbs (a: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]))
  return m
}

/** Largest |a - b| over the largest |b| (no floor: for values all below 1, unlike relativeError). */
export function maxRelDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.strictEqual(a.length, b.length)
  let diff = 0; let scale = 0
  for (let i = 0; i < a.length; i++) { diff = Math.max(diff, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(b[i])) }
  return diff / scale
}

/** Largest |a - b| over the largest |b| (at least 1). */
export function relativeError (a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.strictEqual(a.length, b.length, 'same number of values')
  let diff = 0
  let scale = 1
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]))
    scale = Math.max(scale, Math.abs(b[i]))
  }
  return diff / scale
}

/**
 * Fraction of pixels whose argmax over the classes (dim 1 of [N, K, H, W]) agrees. With `minMargin`,
 * only the pixels where b's two largest logits are at least `minMargin` apart count (near-ties,
 * which any rounding can flip, are left out); 1 when there are none.
 */
export function labelAgreement (a: ArrayLike<number>, b: ArrayLike<number>, shape: readonly number[], minMargin = 0): number {
  const { same, counted } = labelCounts(a, b, shape, minMargin)
  return counted === 0 ? 1 : same / counted
}

/** labelAgreement's counts: the pixels compared (b's margin at least minMargin) and those whose labels agree. */
export function labelCounts (a: ArrayLike<number>, b: ArrayLike<number>, shape: readonly number[], minMargin = 0): { same: number, counted: number } {
  const [n, k, h, w] = shape
  const plane = h * w
  let same = 0
  let counted = 0
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < plane; p++) {
      let ba = 0
      let bb = 0
      for (let c = 1; c < k; c++) {
        if (a[(i * k + c) * plane + p] > a[(i * k + ba) * plane + p]) ba = c
        if (b[(i * k + c) * plane + p] > b[(i * k + bb) * plane + p]) bb = c
      }
      if (minMargin > 0) {
        let second = -Infinity
        for (let c = 0; c < k; c++) if (c !== bb) second = Math.max(second, b[(i * k + c) * plane + p])
        if (b[(i * k + bb) * plane + p] - second < minMargin) continue
      }
      counted++
      if (ba === bb) same++
    }
  }
  return { same, counted }
}

// A child process trains the model saved in `file` for `steps` SGD steps (fp32, seed 7) on a fixed
// 2 x 3 x `size` x `size` batch of two classes (`fit`: more options of fit) under SEGTORCH_PROFILE: its losses, and the Chrome
// traces of its native jobs (libtorch's profiler: every operator, nested by time) to tell which path ran.
const PROFILED_CHILD = `
  const st = require(${JSON.stringify(path.join(ROOT, 'lib'))});
  (async () => {
    const c = JSON.parse(process.argv[1]);
    const m = await st.loadModel(c.file);
    const n = 2, s = c.size;
    const x = st.tensor(new Float32Array(n * 3 * s * s).map((_, i) => Math.sin(i * 0.37) + 0.3 * Math.cos(i * 0.011)), [n, 3, s, s]);
    const y = st.tensor(new Uint8Array(n * s * s).map((_, i) => ((i % s) + Math.floor(i / s)) % 7 < 3 ? 1 : 0), [n, s, s]);
    const data = function * () { for (;;) yield { images: x, masks: y } };
    const losses = [];
    await m.fit(data, {
      iterations: c.steps, seed: 7, precision: 'fp32', channelsLast: c.channelsLast,
      optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 }, schedule: { type: 'constant' }, ...c.fit,
      onStep: (st) => { losses.push(st.loss) }
    });
    console.log(JSON.stringify({ losses }));
  })().catch((e) => { console.error(e); process.exit(1) });`

/** One operator of a profiled job, with the names of the operators it ran inside (innermost first). */
export interface TraceEvent { name: string, ts: number, dur: number, tid: number | string, parents: string[] }
export interface ProfiledRun { losses: number[], trace: string, events: TraceEvent[] }

/** Each model created from its options and saved (fresh weights) in a temporary folder: name -> file. */
export async function savedModels (models: Record<string, ModelOptions>): Promise<Record<string, string>> {
  const dir = tmpdir()
  const files: Record<string, string> = {}
  for (const [name, options] of Object.entries(models)) {
    const m = await createModel(options)
    files[name] = path.join(dir, `${name}.segtorch`)
    await m.save(files[name])
    m.dispose()
  }
  return files
}

export function profiledTraining (file: string, o: { channelsLast: boolean, env?: Record<string, string>, steps?: number, size?: number, fit?: object }): ProfiledRun {
  const dir = tmpdir('segtorch-profile-')
  const r = spawnSync(process.execPath, ['-r', CHILD_REGISTER, '-e', PROFILED_CHILD,
    JSON.stringify({ file, steps: o.steps ?? 3, size: o.size ?? 40, channelsLast: o.channelsLast, fit: o.fit ?? {} })], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...o.env, SEGTORCH_PROFILE: path.join(dir, 'job') }
  })
  assert.strictEqual(r.status, 0, r.stderr)
  const texts = fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
  const events: TraceEvent[] = []
  for (const text of texts) {
    const j = JSON.parse(text) as unknown
    const list = (Array.isArray(j) ? j : (j as { traceEvents: unknown[] }).traceEvents) as Array<Record<string, unknown>>
    const timed = list.filter((e) => e.ph === 'X').map((e) => ({ name: String(e.name), ts: Number(e.ts), dur: Number(e.dur), tid: e.tid as number | string, parents: [] as string[] }))
    timed.sort((a, b) => a.ts - b.ts || b.dur - a.dur)
    const open = new Map<number | string, TraceEvent[]>()
    for (const e of timed) {
      const stack = open.get(e.tid) ?? []
      while (stack.length > 0 && stack[stack.length - 1].ts + stack[stack.length - 1].dur <= e.ts) stack.pop()
      e.parents = stack.map((p) => p.name).reverse()
      stack.push(e)
      open.set(e.tid, stack)
      events.push(e)
    }
  }
  return { ...JSON.parse(r.stdout.trim().split('\n').pop() as string) as { losses: number[] }, trace: texts.join('\n'), events }
}
