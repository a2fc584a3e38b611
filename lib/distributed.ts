/**
 * Data-parallel training over several processes and machines, on c10d (torch.distributed's C++
 * engine): a TCPStore rendezvous, Gloo on the CPU, NCCL on CUDA where the libtorch has it. Each
 * process is one rank, launched with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
 * LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; torchrun's agent store when
 * TORCHELASTIC_USE_AGENT_STORE is set) by `torchrun --no-python` or `npx segtorch launch`.
 * Every collective runs on a native thread (the promise never blocks the event loop) and fails
 * after `timeoutMs` with a DistributedError naming this rank and the operation.
 */
import * as os from 'os'
import { binding } from './binding'
import { rangeError, SegtorchError, typeError, withStack } from './errors'
import { Tensor } from './tensor'
import * as v from './validate'

export interface DistributedOptions {
  /** 'gloo' (CPU tensors) or 'nccl' (CUDA tensors). Default: 'nccl' when CUDA and NCCL are available, else 'gloo'. */
  backend?: 'gloo' | 'nccl'
  /** Milliseconds a rendezvous or collective may take before it fails. Default 60000. */
  timeoutMs?: number
  /** Default: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the environment. */
  rank?: number
  worldSize?: number
  localRank?: number
  localWorldSize?: number
  masterAddr?: string
  masterPort?: number
}

const KEYS = ['backend', 'timeoutMs', 'rank', 'worldSize', 'localRank', 'localWorldSize', 'masterAddr', 'masterPort'] as const

/** This process's rank (0 when not initialised). */
export let rank = 0
/** Number of processes (1 when not initialised). */
export let worldSize = 1
/** Rank among the processes of this machine. */
export let localRank = 0
/** Processes on this machine. */
export let localWorldSize = 1
/** The backend in use ('' when not initialised). */
export let backend = ''
/** Collective timeout in milliseconds. */
export let timeoutMs = 60000

let initialized = false
let userThreads = false

/** @internal setNumThreads() was called: init() leaves the thread count alone. */
export function threadsSetByUser (): void {
  userThreads = true
}

/** Whether init() has run (and destroy() has not). */
export function isInitialized (): boolean {
  return initialized
}

/** What this build supports: c10d, gloo, nccl, and why not when it does not. */
export function available (): { c10d: boolean, gloo: boolean, nccl: boolean, why: string } {
  return binding.distAvailable()
}

function envInt (name: string, fallback: number | undefined, min: number): number | undefined {
  const s = process.env[name]
  if (s === undefined || s === '') return fallback
  const n = Number(s)
  if (!Number.isInteger(n) || n < min) throw new RangeError(`Expected an integer >= ${min} in the environment variable ${name} but received '${s}'`)
  return n
}

/**
 * Joins the process group: every rank calls it (the rendezvous waits up to timeoutMs for all of
 * them). `rendezvous` says how the ranks met (rank 0's TCPStore, torchrun's agent store, or the
 * fallback when that store does not answer this libtorch). On the CPU, unless setNumThreads() was called, each rank then uses cores / LOCAL_WORLD_SIZE
 * threads.
 */
export async function init (options?: DistributedOptions): Promise<{ rank: number, worldSize: number, backend: string, rendezvous: string }> {
  const o = v.optionsObject('distributed options', options)
  v.checkKeys('distributed options', o, KEYS)
  if (initialized) throw new SegtorchError('distributed: already initialised (call distributed.destroy() first)')
  const a = binding.distAvailable()
  if (!a.c10d || (!a.gloo && !a.nccl)) throw new SegtorchError(`distributed training is not available in this build of segtorch: ${a.why}`)
  const world = o.worldSize === undefined ? envInt('WORLD_SIZE', 1, 1) as number : v.integer('worldSize', o.worldSize, 1)
  const r = o.rank === undefined ? envInt('RANK', 0, 0) as number : v.integer('rank', o.rank, 0)
  if (r >= world) throw rangeError('rank', `an integer below worldSize (${world})`, r)
  const localWorld = o.localWorldSize === undefined ? envInt('LOCAL_WORLD_SIZE', world === 1 ? 1 : undefined, 1) : v.integer('localWorldSize', o.localWorldSize, 1)
  const localR = o.localRank === undefined ? envInt('LOCAL_RANK', world === 1 ? 0 : undefined, 0) : v.integer('localRank', o.localRank, 0)
  if (localWorld === undefined || localR === undefined) {
    throw new SegtorchError('distributed: LOCAL_RANK and LOCAL_WORLD_SIZE are not set: start the ranks with `npx segtorch launch` or `torchrun`, or pass localRank and localWorldSize')
  }
  const addr = o.masterAddr === undefined ? (process.env.MASTER_ADDR || '127.0.0.1') : v.string('masterAddr', o.masterAddr)
  // One process without MASTER_PORT: any free port (port 0, the store is its own).
  const port = o.masterPort === undefined ? envInt('MASTER_PORT', world === 1 ? 0 : undefined, 0) : v.integer('masterPort', o.masterPort, 0, 65535)
  if (port === undefined) throw new SegtorchError('distributed: MASTER_PORT is not set: start the ranks with `npx segtorch launch` or `torchrun`, or pass masterPort')
  if (port > 65535) throw rangeError('MASTER_PORT', 'a port number 0..65535', port)
  const timeout = o.timeoutMs === undefined ? 60000 : v.integer('timeoutMs', o.timeoutMs, 1)
  const cuda = binding.backend().cuda
  const be = o.backend === undefined ? (cuda && a.nccl ? 'nccl' : 'gloo') : v.oneOf('backend', o.backend, ['gloo', 'nccl'] as const)
  if (be === 'nccl' && !a.nccl) throw new SegtorchError('distributed: the nccl backend is not available (this libtorch has no CUDA, or segtorch was built without nccl.h); use backend \'gloo\'')
  if (be === 'gloo' && !a.gloo) throw new SegtorchError(`distributed: the gloo backend is not available: ${a.why}`)
  const agent = /^(1|true)$/i.test(process.env.TORCHELASTIC_USE_AGENT_STORE ?? '')
  const restart = envInt('TORCHELASTIC_RESTART_COUNT', 0, 0) as number
  if (!userThreads && !cuda) {
    const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
    binding.setNumThreads(Math.max(1, Math.floor(cores / localWorld)))
  }
  const g = await withStack(() => binding.distInit({
    backend: be, rank: r, worldSize: world, localRank: localR, localWorldSize: localWorld, masterAddr: addr, masterPort: port, agentStore: agent, restartCount: restart, timeoutMs: timeout
  }))
  rank = g.rank
  worldSize = g.worldSize
  localRank = localR
  localWorldSize = localWorld
  backend = g.backend
  timeoutMs = timeout
  initialized = true
  return g
}

/** The device of this rank: 'cuda:<LOCAL_RANK>' with CUDA, else 'cpu'. */
export function device (): string {
  return binding.backend().cuda ? `cuda:${localRank}` : 'cpu'
}

function check (what: string): void {
  if (!initialized) throw new SegtorchError(`distributed: not initialised: call distributed.init() before ${what}`)
}

let barriers = 0

/** Resolves when every rank has called it. */
export async function barrier (): Promise<void> {
  check('barrier()')
  const n = ++barriers
  await withStack(() => binding.distBarrier(`barrier ${n}`))
}

/** The sum (or maximum) of `t` over the ranks, as a new tensor (every rank calls it with the same shape). */
export async function allReduce<T extends Tensor> (t: T, op: 'sum' | 'max' = 'sum', what = 'allReduce'): Promise<T> {
  check('allReduce()')
  if (!(t instanceof Tensor)) throw typeError('tensor', 'a segtorch Tensor', t)
  v.oneOf('op', op, ['sum', 'max'] as const)
  return Tensor.fromNative(await withStack(() => binding.distAllReduce(t._native(), op, what))) as T
}

/** Leaves the process group (models set up for it keep training alone). */
export async function destroy (): Promise<void> {
  if (!initialized) return
  await withStack(() => binding.distDestroy())
  initialized = false
  rank = 0
  worldSize = 1
  localRank = 0
  localWorldSize = 1
  backend = ''
}

/** What this rank's process group did since init(). */
export interface DistributedStats {
  /** Bytes all-reduced (gradients, flags, metrics). */
  reducedBytes: number
  /** Seconds spent waiting for reductions to finish. */
  reduceSeconds: number
  /** Bytes of gradient buckets whose reduction started during the backward pass (overlapping it). */
  overlappedBytes: number
}

/** What this rank's process group did since init(). */
export function stats (): DistributedStats {
  return binding.distStats()
}
