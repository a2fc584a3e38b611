/**
 * Runs fuzz workers (test/fuzz/worker.ts) in child processes and judges them: a worker that dies by a
 * signal or a non-zero exit is a crash (the mutant it was on is named and kept), one that prints
 * nothing for `hangMs` is a hang (killed, the mutant kept).
 *
 * As a command (scripts/fuzz.sh): node -r ts-node/register/transpile-only test/fuzz/run.ts [COUNT] [SEED] [KINDS]
 */
import { spawn, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'

export const KINDS = ['model', 'checkpoint', 'statedict', 'torchscript', 'png'] as const
export type FuzzKind = typeof KINDS[number]

export interface FuzzResult {
  kind: FuzzKind
  count: number
  seconds: number
  crash?: string // signal / exit code and the mutant's index
  hang?: number // index of the mutant that hung
  summary?: {
    outcomes: Record<string, number>
    errorNames: Record<string, number>
    weightMutants: number
    weightLoaded: number
    maxRssMiB: number
  }
  keptMutant?: string
}

const ROOT = path.join(__dirname, '..', '..')

/** Writes the TorchScript base file with Debian's PyTorch; undefined when it is not installed. */
export function torchScriptBase (dir: string): string | undefined {
  const f = path.join(dir, 'ts-base.pt')
  const r = spawnSync('/usr/bin/python3', ['-c', [
    'import torch, sys',
    'm = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1)).eval())',
    'm.save(sys.argv[1])'
  ].join('\n'), f], { encoding: 'utf8' })
  return r.status === 0 ? f : undefined
}

export function runFuzz (kind: FuzzKind, count: number, seed: number, dir: string, tsBase?: string, hangMs = 30000): Promise<FuzzResult> {
  const work = path.join(dir, kind)
  fs.mkdirSync(work, { recursive: true })
  const t0 = Date.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-r', path.join(__dirname, '..', 'child-register.js'), path.join(__dirname, 'worker.ts'), kind, String(seed), String(count), work, tsBase ?? ''], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' }
    })
    let last = -1
    let out = ''
    let err = ''
    let hung = false
    let timer = setTimeout(onHang, hangMs)
    function onHang (): void { hung = true; child.kill('SIGKILL') }
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const lines = out.split('\n')
      out = lines.pop() as string
      for (const line of lines) {
        if (/^\d+$/.test(line)) last = Number(line)
        else if (line.startsWith('SUMMARY ')) (result as FuzzResult).summary = JSON.parse(line.slice(8))
        else if (line.startsWith('FATAL ')) err += line + '\n'
      }
      clearTimeout(timer)
      timer = setTimeout(onHang, hangMs)
    })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const result: Partial<FuzzResult> = { kind, count }
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      result.seconds = (Date.now() - t0) / 1000
      const keep = (): string => {
        const kept = path.join(dir, `${kind}-mutant-${last}`)
        try { fs.copyFileSync(path.join(work, 'mutant'), kept) } catch { /* none written yet */ }
        return kept
      }
      if (hung) {
        result.hang = last
        result.keptMutant = keep()
      } else if (signal !== null || code !== 0 || result.summary === undefined) {
        result.crash = `${signal ?? `exit code ${String(code)}`} at mutant ${last}: ${err.slice(-2000)}`
        result.keptMutant = keep()
      }
      resolve(result as FuzzResult)
    })
  })
}

if (require.main === module) {
  const count = Number(process.argv[2] ?? 10000)
  const seed = Number(process.argv[3] ?? Date.now() % 100000)
  const kinds = (process.argv[4]?.split(',') ?? [...KINDS]) as FuzzKind[]
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segtorch-fuzz-'))
  const tsBase = torchScriptBase(dir)
  ;(async () => {
    let bad = 0
    // Two workers at a time (one per core).
    const queue = [...kinds]
    const results: FuzzResult[] = []
    await Promise.all([0, 1].map(async () => {
      for (let k = queue.shift(); k !== undefined; k = queue.shift()) {
        if (k === 'torchscript' && tsBase === undefined) { console.log('torchscript: skipped (Debian python3-torch not installed)'); continue }
        const r = await runFuzz(k, count, seed, dir, tsBase)
        results.push(r)
        const s = r.summary
        console.log(`${k}: ${count} mutants in ${r.seconds.toFixed(0)} s: ${s ? `${JSON.stringify(s.outcomes)} errors ${JSON.stringify(s.errorNames)}, raw weight-record mutants ${s.weightMutants} of which loaded ${s.weightLoaded}, peak RSS ${s.maxRssMiB} MiB` : ''}${r.crash ? ` CRASH ${r.crash}` : ''}${r.hang !== undefined ? ` HANG at mutant ${r.hang}` : ''}${r.keptMutant ? ` (kept: ${r.keptMutant})` : ''}`)
        if (r.crash || r.hang !== undefined || !s || s.weightLoaded > 0 || s.outcomes.backtrace || s.errorNames.Error) bad++
      }
    }))
    console.log(`fuzz: seed ${seed}, ${results.length} kinds, ${bad === 0 ? 'OK: 0 crashes, 0 hangs, 0 weight-record mutants loaded, 0 bare Errors' : `${bad} kind(s) FAILED`} (files in ${dir})`)
    process.exitCode = bad === 0 ? 0 : 1
  })()
}
