import * as assert from 'assert'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { tensor, Tensor } from '../lib'

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
