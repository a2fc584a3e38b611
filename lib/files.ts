/**
 * Paths checked in TypeScript before native code (or a libuv thread) touches them: a FIFO, a device
 * or a socket blocks or floods whoever opens it, a folder under /proc or /sys makes Node's
 * recursive mkdir spin, and a save killed with SIGKILL leaves its temporary file behind.
 */
import * as fs from 'fs'
import * as path from 'path'
import { FileError } from './errors'

/** What a non-regular file is, in words. */
function kind (st: fs.Stats): string {
  if (st.isFile()) return 'a file'
  if (st.isDirectory()) return 'a folder'
  if (st.isFIFO()) return 'a FIFO (named pipe)'
  if (st.isCharacterDevice()) return 'a character device'
  if (st.isBlockDevice()) return 'a block device'
  if (st.isSocket()) return 'a socket'
  return 'of an unknown kind'
}

function refuseIrregular (file: string, what: string, st: fs.Stats): void {
  if (!st.isFile()) throw new FileError(`Expected ${what} but ${file} is ${kind(st)}, not a regular file`, file)
}

/**
 * Refuses a path that exists and is not a regular file (after following links), without opening
 * it: opening a FIFO with no writer blocks forever. A path that does not exist passes (the caller
 * reports it with its own message).
 */
export async function checkRegularFile (file: string, what = 'a file'): Promise<void> {
  let st: fs.Stats
  try {
    st = await fs.promises.stat(file)
  } catch {
    return
  }
  refuseIrregular(file, what, st)
}

/** checkRegularFile, synchronously. */
export function checkRegularFileSync (file: string, what = 'a file'): void {
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch {
    return
  }
  refuseIrregular(file, what, st)
}

// statfs f_type of kernel pseudo file systems where nothing of ours can be written.
const PSEUDO_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'], [0x62656572, 'sysfs'], [0x64626720, 'debugfs'], [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'], [0x27e0eb, 'cgroup'], [0x63677270, 'cgroup2'], [0xcafe4a11, 'bpf'],
  [0x42494e4d, 'binfmt_misc'], [0x6e736673, 'nsfs'], [0x50495045, 'pipefs'], [0x534f434b, 'sockfs']
])

/**
 * Checks that folder `dir` exists or can be created: its nearest existing ancestor (or itself) is
 * a writable folder, not on /proc, /sys or another kernel pseudo file system. Throws a FileError
 * naming `what` (e.g. 'checkpointDir') and the reason. Call before `mkdir(dir, { recursive })`.
 */
export function checkWritableDir (dir: string, what = 'folder'): void {
  const target = path.resolve(dir)
  let existing = target
  let st: fs.Stats | undefined
  for (;;) {
    try {
      st = fs.statSync(existing)
      break
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' && code !== 'ENOTDIR') {
        throw new FileError(`Cannot use ${dir} as ${what}: ${existing} cannot be examined (${code ?? (err as Error).message})`, dir)
      }
      const parent = path.dirname(existing)
      if (parent === existing) break
      existing = parent
    }
  }
  const where = existing === target ? `${dir}` : `${dir}: its nearest existing ancestor ${existing}`
  if (st === undefined) throw new FileError(`Cannot use ${dir} as ${what}: no part of the path exists`, dir)
  if (!st.isDirectory()) throw new FileError(`Cannot use ${dir} as ${what}: ${where} is ${kind(st)}, not a folder`, dir)
  let real = existing
  try {
    real = fs.realpathSync(existing)
  } catch {}
  const top = real.split(path.sep)[1]
  if (top === 'proc' || top === 'sys') {
    throw new FileError(`Cannot use ${dir} as ${what}: ${where} is under /${top}, a kernel file system where files cannot be created`, dir)
  }
  if (typeof fs.statfsSync === 'function') {
    try {
      const fsName = PSEUDO_FS.get(Number(fs.statfsSync(existing).type))
      if (fsName !== undefined) throw new FileError(`Cannot use ${dir} as ${what}: ${where} is on ${fsName}, a kernel file system where files cannot be created`, dir)
    } catch (err) {
      if (err instanceof FileError) throw err
    }
  }
  try {
    fs.accessSync(existing, fs.constants.W_OK | fs.constants.X_OK)
  } catch (err) {
    throw new FileError(`Cannot use ${dir} as ${what}: ${where} is not writable (${(err as NodeJS.ErrnoException).code ?? 'access denied'})`, dir)
  }
}

/** Checks `dir` with checkWritableDir, then creates it (and its parents). */
export async function makeDir (dir: string, what = 'folder'): Promise<void> {
  checkWritableDir(dir, what)
  await fs.promises.mkdir(dir, { recursive: true })
}

/** Checks `dir` with checkWritableDir, then creates it (and its parents), synchronously. */
export function makeDirSync (dir: string, what = 'folder'): void {
  checkWritableDir(dir, what)
  fs.mkdirSync(dir, { recursive: true })
}

/** True when process `pid` exists (one of another user's counts: signal 0 then fails with EPERM). */
function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

/**
 * Removes `<file>.tmp-<pid>` files (what an atomic save writes before its rename) whose process is
 * gone: left behind by saves killed with SIGKILL or by a power cut. Those of live processes,
 * ours included, stay. Returns the paths removed. Never throws: a save must not fail over this.
 */
export async function removeStaleTemps (file: string): Promise<string[]> {
  const dir = path.dirname(path.resolve(file))
  const prefix = `${path.basename(file)}.tmp-`
  const removed: string[] = []
  let names: string[]
  try {
    names = await fs.promises.readdir(dir)
  } catch {
    return removed
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue
    const digits = name.slice(prefix.length)
    if (!/^[0-9]{1,10}$/.test(digits)) continue
    const pid = Number(digits)
    if (pid < 1 || pid > 0x7fffffff || pid === process.pid || alive(pid)) continue
    const full = path.join(dir, name)
    try {
      if (!(await fs.promises.lstat(full)).isFile()) continue
      await fs.promises.unlink(full)
      removed.push(full)
    } catch {}
  }
  return removed
}
