/**
 * `segtorch launch`: starts the ranks of this machine with torchrun's environment (RANK, WORLD_SIZE,
 * LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT), forwards SIGINT / SIGTERM /
 * SIGHUP to them, and when one fails stops the others (SIGTERM, then SIGKILL after a grace period)
 * and exits non-zero. No rendezvous of its own: rank 0 hosts c10d's TCPStore at MASTER_ADDR:MASTER_PORT.
 */
import { ChildProcess, spawn } from 'child_process'
import * as net from 'net'
import * as os from 'os'

export interface LaunchOptions {
  nprocPerNode: number
  nnodes?: number
  nodeRank?: number
  masterAddr?: string
  /** Default: a free port on one machine, 29500 on several. */
  masterPort?: number
  /** Milliseconds between SIGTERM and SIGKILL when stopping the ranks. Default 10000. */
  graceMs?: number
  /** Extra environment of every rank. */
  env?: NodeJS.ProcessEnv
  /** Where the launcher's own messages go. Default: stderr. */
  log?: (line: string) => void
}

export interface LaunchResult {
  /** The launcher's exit code: 0 when every rank succeeded, else the first failed rank's. */
  code: number
  /** The first rank that failed, with its exit code or signal. */
  failed?: { rank: number, code: number | null, signal: NodeJS.Signals | null }
}

/** A port that was free a moment ago (the OS's choice for port 0). */
export function freePort (host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.once('error', reject)
    s.listen(0, host, () => {
      const a = s.address()
      const port = typeof a === 'object' && a !== null ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

export async function launch (command: string[], o: LaunchOptions): Promise<LaunchResult> {
  if (command.length === 0) throw new Error('segtorch launch: no command to run (segtorch launch --nproc-per-node N -- node train.js)')
  const nproc = o.nprocPerNode
  const nnodes = o.nnodes ?? 1
  const nodeRank = o.nodeRank ?? 0
  if (!Number.isInteger(nproc) || nproc < 1) throw new RangeError(`Expected an integer >= 1 for --nproc-per-node but received ${nproc}`)
  if (!Number.isInteger(nnodes) || nnodes < 1) throw new RangeError(`Expected an integer >= 1 for --nnodes but received ${nnodes}`)
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) throw new RangeError(`Expected an integer in [0, ${nnodes - 1}] for --node-rank but received ${nodeRank}`)
  const addr = o.masterAddr ?? '127.0.0.1'
  const port = o.masterPort ?? (nnodes === 1 ? await freePort() : 29500)
  const grace = o.graceMs ?? 10000
  const log = o.log ?? ((line: string) => { process.stderr.write(line + '\n') })
  const world = nnodes * nproc

  const children: Array<ChildProcess | undefined> = []
  let running = 0
  let failed: LaunchResult['failed']
  let killTimer: NodeJS.Timeout | undefined
  let done: () => void = () => {}
  const finished = new Promise<void>((resolve) => { done = resolve })

  const stopOthers = (): void => {
    for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM')
    killTimer = setTimeout(() => {
      for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    }, grace)
    killTimer.unref()
  }
  const forward = (signal: NodeJS.Signals): void => {
    for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill(signal)
  }
  for (const s of SIGNALS) process.on(s, forward)

  for (let i = 0; i < nproc; i++) {
    const rank = nodeRank * nproc + i
    const env: NodeJS.ProcessEnv = { ...process.env, ...o.env }
    for (const k of Object.keys(env)) if (k.startsWith('TORCHELASTIC_')) delete env[k] // ours is no agent store
    Object.assign(env, {
      RANK: String(rank),
      WORLD_SIZE: String(world),
      LOCAL_RANK: String(i),
      LOCAL_WORLD_SIZE: String(nproc),
      GROUP_RANK: String(nodeRank),
      MASTER_ADDR: addr,
      MASTER_PORT: String(port),
      OMP_NUM_THREADS: env.OMP_NUM_THREADS ?? String(Math.max(1, Math.floor((typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length) / nproc)))
    })
    // Its own process group: a terminal's Ctrl-C reaches the launcher alone, which forwards it once.
    const child = spawn(command[0], command.slice(1), { stdio: 'inherit', env, detached: true })
    children.push(child)
    running++
    child.once('error', (err) => {
      log(`segtorch launch: rank ${rank} could not start '${command[0]}': ${err.message}`)
    })
    child.once('close', (code, signal) => {
      running--
      if ((code !== 0 || signal !== null) && failed === undefined) {
        failed = { rank, code, signal }
        log(`segtorch launch: rank ${rank} ${signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`}; stopping the other ranks`)
        stopOthers()
      }
      if (running === 0) done()
    })
  }
  await finished
  if (killTimer) clearTimeout(killTimer)
  for (const s of SIGNALS) process.removeListener(s, forward)
  if (failed === undefined) return { code: 0 }
  const signum = failed.signal !== null ? (os.constants.signals[failed.signal] ?? 1) : 0
  return { code: failed.code !== null && failed.code !== 0 ? failed.code : 128 + signum, failed }
}
