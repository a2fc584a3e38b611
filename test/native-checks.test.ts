// The native checks (test/native/*.cc): segtorch's own kernels (bf16 Winograd, the fused training batch
// norm, the fused softmax cross-entropy, predict's bf16 ReLU) against libtorch's result on edge cases
// that the TypeScript tests cannot reach (every bf16 bit pattern, NaN / inf scores, odd tile sizes).
// Each is a CMake target built from the same objects as the addon this process loaded, in that
// addon's build folder (build/ after `npm test`'s build; SEGTORCH_ADDON's folder when it names
// another build); scripts/sanitize.sh runs them under ASan + UBSan.
import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'

const ROOT = path.join(__dirname, '..')
const addon = process.env.SEGTORCH_ADDON ? path.resolve(process.env.SEGTORCH_ADDON) : ''
const buildDir = addon !== '' ? path.dirname(path.dirname(addon)) : path.join(ROOT, 'build')
const configured = fs.existsSync(path.join(buildDir, 'CMakeCache.txt'))
const checks = fs.readdirSync(path.join(ROOT, 'test', 'native')).filter((f) => f.endsWith('.cc')).map((f) => f.slice(0, -3)).sort()

describe('native kernel checks (test/native)', function () {
  this.timeout(900000)
  before(function () {
    // Only an installed package without its build tree lacks this; `npm test` in a checkout builds it.
    if (!configured) {
      process.stderr.write(`native checks skipped: no CMake build folder at ${buildDir} (run npm test in a checkout)\n`)
      this.skip()
    }
  })

  it('finds the four checks', function () {
    assert.deepStrictEqual(checks, ['batch_norm_check', 'cross_entropy_check', 'relu_check', 'winograd_check'])
  })

  for (const name of checks) {
    it(`${name} builds from the addon's objects and passes`, function () {
      const jobs = String(Math.max(1, Math.min(2, os.cpus().length)))
      const b = spawnSync('cmake', ['--build', buildDir, '--target', name, '-j', jobs], { cwd: ROOT, encoding: 'utf8' })
      assert.strictEqual(b.status, 0, `cmake --build ${buildDir} --target ${name} failed:\n${(b.stdout + b.stderr).slice(-4000)}`)
      const r = spawnSync(path.join(buildDir, name), [], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } })
      const out = (r.stdout ?? '') + (r.stderr ?? '')
      const last = out.trim().split('\n').pop() ?? ''
      assert.strictEqual(r.status, 0, `${name} exited ${r.status} (signal ${r.signal}):\n${out.slice(-4000)}`)
      assert.match(last, /^OK \d+/, `${name}: expected its last line to read 'OK <n>', got:\n${out.slice(-2000)}`)
    })
  }
})
