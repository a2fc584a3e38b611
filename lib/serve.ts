/**
 * Request batching for services: with batching on, concurrent `predict` calls of the same image
 * size and options are collected natively and run as one forward (see the README, "Serving").
 */
import { typeError } from './errors'
import * as v from './validate'

export interface BatchingOptions {
  /** Most images in one forward. Default 8. */
  maxBatch?: number
  /** How long the first request of a batch waits for others, in milliseconds. Default 5. */
  maxDelayMs?: number
}

/** Counters of a model's predict calls (since it was created). */
export interface BatchStats {
  /** predict calls. */
  requests: number
  /** Images in them. */
  images: number
  /** Native forwards run for them (a batch, or a request alone). */
  runs: number
  /** Runs that served more than one request. */
  batched: number
  /** Most images in one run. */
  largest: number
  /** Batches that failed as a whole and were re-run request by request. */
  fallbacks: number
}

export function resolveBatching (options: unknown, name = 'batching'): Required<BatchingOptions> | false {
  if (options === false) return false
  if (options === true) return { maxBatch: 8, maxDelayMs: 5 }
  if (!v.isPlainObject(options)) throw typeError(name, 'false or an options object { maxBatch, maxDelayMs }', options)
  v.checkKeys(`${name} options`, options, ['maxBatch', 'maxDelayMs'])
  return {
    maxBatch: options.maxBatch === undefined ? 8 : v.integer(`${name}.maxBatch`, options.maxBatch, 1, 1024),
    maxDelayMs: options.maxDelayMs === undefined ? 5 : v.number(`${name}.maxDelayMs`, options.maxDelayMs, 0, 10000)
  }
}
