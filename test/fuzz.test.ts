/**
 * Fuzzing in the suite (issue 12): 1,000 seeded mutants of each kind of file a user may be handed
 * (model, checkpoint for resume, state dict, TorchScript, mask PNG), loaded in a worker process each:
 * no crash, no hang, peak RSS under 1 GiB, every refusal a named error (never a bare Error), and no raw
 * mutant of a weight record loading without error. scripts/fuzz.sh runs the same with 10,000+ mutants and a random seed.
 */
import * as assert from 'assert'
import { KINDS, runFuzz, torchScriptBase } from './fuzz/run'
import { tmpdir } from './helpers'

const COUNT = Number(process.env.SEGTORCH_FUZZ_COUNT ?? 1000)
const SEED = 12
// Peak RSS bound of a worker. scripts/sanitize.sh raises it: ASan's shadow memory, redzones and
// quarantine add about 200 MiB to each worker; the bound itself is checked by the normal run.
const MAX_RSS_MIB = Number(process.env.SEGTORCH_FUZZ_MAX_RSS_MIB ?? 1024)

describe('fuzzing hostile files', function () {
  this.timeout(900000)
  const dir = tmpdir('segtorch-fuzz-')
  const tsBase = torchScriptBase(dir)
  const pending = new Map<string, ReturnType<typeof runFuzz>>()
  // Two workers at a time, started together so the whole campaign takes about two minutes.
  before(() => {
    const kinds = KINDS.filter((k) => k !== 'torchscript' || tsBase !== undefined)
    let chain: Array<Promise<unknown>> = [Promise.resolve(), Promise.resolve()]
    kinds.forEach((k, i) => {
      const p = chain[i % 2].then(() => runFuzz(k, COUNT, SEED, dir, tsBase))
      chain[i % 2] = p
      pending.set(k, p as ReturnType<typeof runFuzz>)
    })
  })

  for (const kind of KINDS) {
    it(`${kind}: ${COUNT} mutants, no crash, no hang, bounded memory, no corrupt weights loaded`, async function () {
      if (kind === 'torchscript' && tsBase === undefined) {
        console.log('    (skipped: Debian python3-torch, which writes the TorchScript base file, is not installed)')
        this.skip()
      }
      const r = await pending.get(kind)!
      assert.strictEqual(r.crash, undefined, `crash: ${r.crash} (mutant kept at ${r.keptMutant})`)
      assert.strictEqual(r.hang, undefined, `hang at mutant ${r.hang} (kept at ${r.keptMutant})`)
      const s = r.summary!
      console.log(`      ${JSON.stringify(s.outcomes)}, errors ${JSON.stringify(s.errorNames)}, raw weight-record mutants ${s.weightMutants}, peak RSS ${s.maxRssMiB} MiB, ${r.seconds.toFixed(0)} s`)
      assert.ok(s.outcomes.error + s.outcomes.loaded + (s.outcomes.unchanged ?? 0) === COUNT)
      assert.ok(s.outcomes.error > COUNT / 4, 'most mutants are refused')
      assert.strictEqual(s.outcomes.backtrace ?? 0, 0, 'no C++ backtrace in messages')
      // Every refusal is a named error (a segtorch error class, TypeError or RangeError), never a bare Error.
      assert.strictEqual(s.errorNames.Error, undefined, `${s.errorNames.Error} mutants refused with a bare Error`)
      assert.strictEqual(s.weightLoaded, 0, 'raw mutants of weight records that loaded without error')
      if (kind !== 'png' && kind !== 'torchscript') assert.ok(s.weightMutants > COUNT / 10, `${s.weightMutants} raw weight-record mutants`)
      assert.ok(s.maxRssMiB < MAX_RSS_MIB, `peak RSS ${s.maxRssMiB} MiB`)
    })
  }
})
