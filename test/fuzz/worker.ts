/**
 * Fuzz worker: loads `count` seeded mutants of one kind of file in this process and reports what
 * happened. Run by test/fuzz.test.ts and scripts/fuzz.sh in a child process, so that a crash is seen
 * as a signal and a hang as silence (a line is printed before every mutant).
 *
 *   node -r ts-node/register/transpile-only test/fuzz/worker.ts KIND SEED COUNT DIR [TORCHSCRIPT_BASE]
 *
 * KIND: model | checkpoint | statedict | torchscript | png
 * Mutants: half raw (bit flips, byte writes, truncation, inserted or deleted runs: what a corrupt
 * download looks like; every CRC is then wrong), half crafted (one record's or chunk's content
 * changed and every CRC fixed: what a hostile file looks like). Crafted TorchScript mutants leave
 * the code/ records alone: TorchScript code is a program, compiled by libtorch (README, "Security and
 * limits").
 * The last line is a JSON summary: outcomes, raw weight-record mutants that loaded (must be 0),
 * peak RSS.
 */
import * as fs from 'fs'
import * as path from 'path'
import * as zlib from 'zlib'
import { createModel, loadModel, loadTorchScript, tensor } from '../../lib'
import { decodeMask } from '../../lib/data/images'
import { encodeIndexedPng } from '../../lib/data/png'
import { readZip, writeZip, zipEntries, ZipEntry } from '../zipkit'

type Kind = 'model' | 'checkpoint' | 'statedict' | 'torchscript' | 'png'
const [kind, seedArg, countArg, dir, tsBase] = process.argv.slice(2) as [Kind, string, string, string, string | undefined]
const seed = Number(seedArg)
const count = Number(countArg)

let state = (seed * 2654435761) >>> 0 || 1
function rand (): number { // xorshift32
  state ^= state << 13; state >>>= 0
  state ^= state >>> 17
  state ^= state << 5; state >>>= 0
  return state / 4294967296
}
const int = (n: number): number => Math.floor(rand() * n)

function mutateBytes (b: Buffer): { bytes: Buffer, touched: number[] } {
  const touched: number[] = []
  switch (int(6)) {
    case 0: { const i = int(b.length); touched.push(i); const c = Buffer.from(b); c[i] ^= 1 << int(8); return { bytes: c, touched } }
    case 1: { const c = Buffer.from(b); for (let k = 0, n = 1 + int(4); k < n; k++) { const i = int(b.length); touched.push(i); c[i] = int(256) } return { bytes: c, touched } }
    case 2: { const i = int(b.length); const c = Buffer.from(b); const v = [0, 0xff, 0x7f, 0x80][int(4)]; for (let k = 0; k < 4 && i + k < c.length; k++) { c[i + k] = v; touched.push(i + k) } return { bytes: c, touched } }
    case 3: return { bytes: b.subarray(0, int(b.length)), touched: [-1] }
    case 4: { const i = int(b.length); const n = 1 + int(64); return { bytes: Buffer.concat([b.subarray(0, i), Buffer.alloc(n, int(256)), b.subarray(i)]), touched: [-1] } }
    default: { const i = int(b.length); const n = 1 + int(64); return { bytes: Buffer.concat([b.subarray(0, i), b.subarray(i + n)]), touched: [-1] } }
  }
}

/** One record's content changed, every CRC right. */
function crafted (zip: Buffer): Buffer {
  const records = readZip(zip)
  const candidates = records.filter((r) => r.data.length > 0 && !(kind === 'torchscript' && r.name.includes('/code/')))
  const r = candidates[int(candidates.length)]
  if (r.name.endsWith('.pkl') && rand() < 0.5) {
    // Integers in a pickle: sizes, strides, offsets, numels, memo keys.
    const c = Buffer.from(r.data)
    const ops = [] as number[]
    for (let i = 0; i < c.length; i++) if (c[i] === 0x4b || c[i] === 0x4a || c[i] === 0x4d) ops.push(i)
    if (ops.length) {
      const i = ops[int(ops.length)]
      const width = c[i] === 0x4b ? 1 : c[i] === 0x4d ? 2 : 4
      for (let k = 1; k <= width && i + k < c.length; k++) c[i + k] = [0, 0xff, int(256)][int(3)]
      r.data = c
      return writeZip(records)
    }
  }
  r.data = mutateBytes(r.data).bytes
  return writeZip(records)
}

/** PNG: one chunk's content changed, its CRC fixed. */
function craftedPng (png: Buffer): Buffer {
  const chunks: Array<{ type: Buffer, data: Buffer }> = []
  for (let p = 8; p + 12 <= png.length;) {
    const len = png.readUInt32BE(p)
    chunks.push({ type: png.subarray(p + 4, p + 8), data: png.subarray(p + 8, p + 8 + len) })
    p += 12 + len
  }
  const c = chunks[int(chunks.length)]
  if (c.data.length) c.data = mutateBytes(c.data).bytes
  const parts = [png.subarray(0, 8)]
  for (const ch of chunks) {
    const head = Buffer.alloc(8)
    head.writeUInt32BE(ch.data.length)
    ch.type.copy(head, 4)
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([ch.type, ch.data])))
    parts.push(head, ch.data, crc)
  }
  return Buffer.concat(parts)
}

/**
 * This process's own peak RSS (VmHWM of its address space). Not getrusage's maxrss: after fork + exec
 * that starts from the parent's peak, so a worker spawned by a big test process would report it.
 */
function peakRssMiB (): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))
  return m ? Math.round(Number(m[1]) / 1024) : Math.round(process.resourceUsage().maxRSS / 1024)
}

const TINY = { arch: 'unet', baseChannels: 4, numClasses: 3, inChannels: 1 } as const

async function main (): Promise<void> {
  fs.mkdirSync(dir, { recursive: true })
  const x = tensor(new Float32Array(1 * 1 * 24 * 24).map((_, i) => Math.sin(i)), [1, 1, 24, 24])
  const y = tensor(new Uint8Array(24 * 24).map((_, i) => i % 3), [1, 24, 24])
  let base: Buffer
  const target = await createModel(TINY) // statedict / checkpoint mutants load into this one
  if (kind === 'model' || kind === 'checkpoint' || kind === 'statedict') {
    const m = await createModel(TINY)
    await m.trainStep(x, y, { optimizer: { type: 'adam', lr: 1e-3 } })
    const f = path.join(dir, 'base')
    if (kind === 'model') await m.save(f)
    else if (kind === 'checkpoint') await m._native().save(f, '{"epoch":1}')
    else await m.saveStateDict(f)
    base = fs.readFileSync(f)
    m.dispose()
  } else if (kind === 'torchscript') {
    base = fs.readFileSync(tsBase as string)
  } else {
    const labels = new Uint8Array(40 * 30).map((_, i) => (i * 7) % 3)
    base = encodeIndexedPng(labels, 40, 30, [[0, 0, 0], [255, 0, 0], [0, 255, 0]])
  }
  const zipRegions = kind === 'png' ? [] : zipEntries(base)
  const isWeight = (r: ZipEntry): boolean => /\/data\/\d+$/.test(r.name) || (kind === 'torchscript' && /\/constants\/\d+$/.test(r.name))

  const outcomes: Record<string, number> = { error: 0, loaded: 0 }
  const errorNames: Record<string, number> = {}
  let weightLoaded = 0
  let weightMutants = 0
  const file = path.join(dir, 'mutant')
  for (let i = 0; i < count; i++) {
    process.stdout.write(`${i}\n`)
    const raw = rand() < 0.5
    let bytes: Buffer
    let inWeight = false
    if (raw) {
      const m = mutateBytes(base)
      bytes = m.bytes
      inWeight = m.touched.length > 0 && m.touched.every((t) => t >= 0 && zipRegions.some((r) => isWeight(r) && t >= r.start && t < r.end))
    } else {
      bytes = kind === 'png' ? craftedPng(base) : crafted(base)
    }
    if (bytes.equals(base)) { // a write of the byte already there: not a mutant
      outcomes.unchanged = (outcomes.unchanged ?? 0) + 1
      continue
    }
    if (inWeight) weightMutants++
    fs.writeFileSync(file, bytes)
    try {
      if (kind === 'model') {
        const m = await loadModel(file)
        await m.predict(x)
        m.dispose()
      } else if (kind === 'checkpoint') {
        await target._load(file)
        await target.trainStep(x, y, { optimizer: { type: 'adam', lr: 1e-3 } })
      } else if (kind === 'statedict') {
        await target.loadStateDict(file)
        await target.predict(x)
      } else if (kind === 'torchscript') {
        const m = await loadTorchScript(file, { numClasses: 2 })
        try { await m.predict(tensor(new Float32Array(3 * 8 * 8), [1, 3, 8, 8])) } catch (err) { /* a mutated but valid program may fail to run: that is an error, not a crash */ }
        m.dispose()
      } else {
        await decodeMask(bytes)
      }
      outcomes.loaded++
      if (inWeight) weightLoaded++
    } catch (err) {
      outcomes.error++
      const name = (err as Error)?.constructor?.name ?? typeof err
      errorNames[name] = (errorNames[name] ?? 0) + 1
      if (/Exception raised from|frame #\d/.test((err as Error)?.message ?? '')) outcomes.backtrace = (outcomes.backtrace ?? 0) + 1
    }
  }
  target.dispose()
  const summary = { kind, seed, count, outcomes, errorNames, weightMutants, weightLoaded, maxRssMiB: peakRssMiB() }
  process.stdout.write(`SUMMARY ${JSON.stringify(summary)}\n`)
}

main().catch((err) => {
  process.stdout.write(`FATAL ${(err as Error)?.stack ?? String(err)}\n`)
  process.exitCode = 2
})
