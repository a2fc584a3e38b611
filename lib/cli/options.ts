/**
 * Command-line options: one table per command gives the flag, its type and default. Values come
 * from (lowest first) the defaults, a resumed run's run.json, a --config JSON file, and the
 * command line; every value is checked here with a message naming the flag.
 */
import * as fs from 'fs'
import { Command, Option } from 'commander'

/** An error in what the user typed: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export type Kind = 'int' | 'number' | 'string' | 'bool' | 'numbers' | 'size' | 'pairs' | 'list' | 'duration' | 'weights'

export interface OptionDef {
  /** commander flags, e.g. '--batch-size <n>'. */
  flags: string
  description: string
  kind: Kind
  /** Applied when no source gives a value. */
  default?: unknown
  min?: number
  max?: number
  choices?: readonly string[]
  /** A --no-x flag as well (booleans). */
  negatable?: boolean
}

/** camelCase key of a flag: '--batch-size <n>' -> 'batchSize'. */
export function keyOf (flags: string): string {
  const long = flags.split(/[ ,|]+/).find((f) => f.startsWith('--')) ?? flags
  return long.replace(/^--(no-)?/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}

function flagOf (key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
}

function describe (d: OptionDef): string {
  const parts = [d.description]
  if (d.choices) parts.push(`(${d.choices.join(', ')})`)
  if (d.default !== undefined && d.kind !== 'bool') parts.push(`[default: ${Array.isArray(d.default) ? d.default.join(',') : String(d.default)}]`)
  return parts.join(' ')
}

/** Adds the table's options to a commander command (without defaults: sources are merged later). */
export function addOptions (cmd: Command, defs: readonly OptionDef[]): Command {
  for (const d of defs) {
    const o = new Option(d.flags, describe(d))
    if (d.kind === 'pairs') o.argParser((val: string, prev: string[] | undefined) => [...(prev ?? []), val])
    cmd.addOption(o)
    if (d.negatable) cmd.addOption(new Option(`--no-${flagOf(keyOf(d.flags)).slice(2)}`, `turn ${flagOf(keyOf(d.flags))} off`))
  }
  return cmd
}

const num = (s: unknown): number => (typeof s === 'number' ? s : typeof s === 'string' && s.trim() !== '' ? Number(s) : NaN)

function show (x: unknown): string {
  return typeof x === 'string' ? `'${x}'` : JSON.stringify(x)
}

/** Checks and converts one value from any source. */
export function coerce (d: OptionDef, value: unknown): unknown {
  const name = flagOf(keyOf(d.flags))
  const bad = (what: string): never => { throw new UsageError(`Expected ${what} for ${name} but received ${show(value)}`) }
  const range = (n: number, integer: boolean): number => {
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) bad(integer ? 'an integer' : 'a number')
    if (d.min !== undefined && n < d.min) bad(`${integer ? 'an integer' : 'a number'} >= ${d.min}`)
    if (d.max !== undefined && n > d.max) bad(`${integer ? 'an integer' : 'a number'} <= ${d.max}`)
    return n
  }
  switch (d.kind) {
    case 'int': return range(num(value), true)
    case 'number': return range(num(value), false)
    case 'bool':
      if (typeof value === 'boolean') return value
      if (value === 'true') return true
      if (value === 'false') return false
      return bad('true or false')
    case 'string': {
      if (typeof value !== 'string' || value === '') bad('a non-empty string')
      const s = value as string
      if (d.choices && !d.choices.includes(s)) bad(`one of ${d.choices.join(', ')}`)
      return s
    }
    case 'list': {
      const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : typeof value === 'number' ? [String(value)] : bad('names separated by commas')
      const out = (items as unknown[]).map((x) => (typeof x === 'number' ? String(x) : x))
      if (out.length === 0 || out.some((x) => typeof x !== 'string' || x.trim() === '')) bad('names separated by commas')
      return (out as string[]).map((x) => x.trim())
    }
    case 'numbers': {
      if (value === false || value === 'none') return false
      const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : typeof value === 'number' ? [value] : bad('numbers separated by commas')
      const out = (items as unknown[]).map((x) => num(x))
      if (out.length === 0 || out.some((x) => !Number.isFinite(x) || x <= 0)) bad('positive numbers separated by commas')
      return out
    }
    case 'size': {
      // 256, "256", "256x512" (height x width), [256, 512]
      const items = Array.isArray(value) ? value : typeof value === 'number' ? [value, value] : typeof value === 'string' ? value.split(/[x,]/) : bad('a size N or HxW')
      const s = (items as unknown[]).map(num)
      const hw = s.length === 1 ? [s[0], s[0]] : s
      if (hw.length !== 2 || hw.some((x) => !Number.isInteger(x) || x < 1)) bad('a size N or HxW (positive integers)')
      return hw as [number, number]
    }
    case 'duration': {
      // seconds: 1500, "1500", "1500s", "25m", "1.5h"
      const m = typeof value === 'number' ? [String(value), String(value), 's'] : typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$/.exec(value) : null
      if (!m) return bad('a duration: seconds, or a number with s, m or h (1500, 25m, 2h)')
      const x = Number(m[1]) * ({ s: 1, m: 60, min: 60, h: 3600 } as Record<string, number>)[m[2] ?? 's']
      if (!(x > 0) || !Number.isFinite(x)) return bad('a positive duration')
      return x
    }
    case 'weights': {
      if (value === 'median-frequency' || value === 'sqrt-median-frequency') return value
      const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : bad('median-frequency, sqrt-median-frequency or numbers separated by commas')
      const out = (items as unknown[]).map((x) => num(x))
      if (out.length === 0 || out.some((x) => !Number.isFinite(x) || x < 0)) bad('median-frequency, sqrt-median-frequency or non-negative numbers separated by commas')
      return out
    }
    case 'pairs': {
      // ["key=value", ...] or { key: value }
      const out: Record<string, unknown> = {}
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) return { ...value as object }
      const items = Array.isArray(value) ? value : [value]
      for (const it of items) {
        const m = typeof it === 'string' ? /^([A-Za-z][\w]*)=(.*)$/.exec(it) : null
        if (!m) bad('key=value')
        const raw = (m as RegExpExecArray)[2]
        out[(m as RegExpExecArray)[1]] = raw === 'true' ? true : raw === 'false' ? false : raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw
      }
      return out
    }
  }
}

/** Reads a --config JSON file: an object of options by camelCase (batchSize) or flag name (batch-size). */
export function readConfig (file: string): Record<string, unknown> {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read the config file ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
  }
  let obj: unknown
  try {
    obj = JSON.parse(text)
  } catch (err) {
    throw new UsageError(`the config file ${file} is not valid JSON: ${(err as Error).message}`)
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new UsageError(`the config file ${file} must hold a JSON object of options`)
  const out: Record<string, unknown> = {}
  for (const [k, val] of Object.entries(obj as Record<string, unknown>)) out[k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())] = val
  return out
}

/**
 * The options of a parsed command: defaults < `lowest` (a recipe's) < `base` (a resumed run's) < the
 * config file < flags given on the command line. Unknown keys in the files are errors.
 */
export function resolveOptions (cmd: Command, defs: readonly OptionDef[], base: Record<string, unknown> = {}, config: Record<string, unknown> = {}, configName = 'the config file', lowest?: { values: Record<string, unknown>, where: string }): Record<string, unknown> {
  const byKey = new Map(defs.map((d) => [keyOf(d.flags), d]))
  const alias: Record<string, string> = { modelOptions: 'modelOption' }
  const out: Record<string, unknown> = {}
  for (const d of defs) if (d.default !== undefined) out[keyOf(d.flags)] = d.default
  // key=value options (--model-option) merge key by key over the layer below: a recipe's
  // { baseChannels: 16, batchNorm: true } with --model-option baseChannels=32 keeps batchNorm.
  const set = (d: OptionDef, k: string, val: unknown): void => {
    const v = coerce(d, val)
    const below = out[k]
    out[k] = d.kind === 'pairs' && below !== null && typeof below === 'object' ? { ...below as Record<string, unknown>, ...v as Record<string, unknown> } : v
  }
  const apply = (src: Record<string, unknown>, where: string): void => {
    for (const [k0, val] of Object.entries(src)) {
      const k = alias[k0] ?? k0
      if (k === 'config') continue
      const d = byKey.get(k)
      if (d === undefined) {
        throw new UsageError(`unknown option '${k0}' in ${where} (known: ${[...byKey.keys()].filter((x) => x !== 'config').join(', ')})`)
      }
      if (val === null || val === undefined) continue
      set(d, k, val)
    }
  }
  if (lowest) apply(lowest.values, lowest.where)
  apply(base, 'the resumed run\'s run.json')
  apply(config, configName)
  const given = cmd.opts()
  for (const [k, val] of Object.entries(given)) {
    if (cmd.getOptionValueSource(k) !== 'cli' || !byKey.has(k) || k === 'config') continue
    set(byKey.get(k) as OptionDef, k, val)
  }
  return out
}
