import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { ROOT, tmpdir } from './helpers'

function sh (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env, maxBuffer: 64 << 20 })
  assert.strictEqual(r.status, 0, `${cmd} ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`)
  return r.stdout
}

describe('the npm package', function () {
  this.timeout(600000)
  let app: string

  before(() => {
    const prebuilt = path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`, 'segtorch.node')
    assert.ok(fs.existsSync(prebuilt), `run npm run build first: ${prebuilt} is missing`)
    const out = tmpdir('segtorch-pack-')
    const packed = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', out], ROOT))
    const tarball = path.join(out, packed[0].filename)
    const files: string[] = packed[0].files.map((f: { path: string }) => f.path)
    assert.ok(files.includes(`prebuilds/${process.platform}-${process.arch}/segtorch.node`), 'the tarball carries the prebuilt addon')
    assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('dist/index.mjs'))
    assert.ok(!files.some((f) => f.startsWith('build/') || f.startsWith('test/')), 'no build folder or tests in the tarball')
    app = tmpdir('segtorch-app-')
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
    sh('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', tarball], app)
  })

  it('installs with --ignore-scripts and predicts from the prebuilt binary, without compiling', () => {
    const pkg = path.join(app, 'node_modules', 'segtorch')
    assert.ok(!fs.existsSync(path.join(pkg, 'build')), 'nothing was compiled')
    const script = `
      const st = require('segtorch');
      (async () => {
        const m = await st.createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 32 });
        const p = await m.predict(st.tensor(new Uint8Array(2 * 40 * 40).fill(100), [2, 1, 40, 40]));
        console.log(JSON.stringify({ shape: p.shape, dtype: p.dtype, libtorch: st.backend().libtorch }));
      })().catch((e) => { console.error(e); process.exit(1) });`
    const out = JSON.parse(sh(process.execPath, ['-e', script], app).trim())
    assert.deepStrictEqual(out.shape, [2, 40, 40])
    assert.strictEqual(out.dtype, 'int32')
  })

  it('works from import (ES modules) as well as require', () => {
    fs.writeFileSync(path.join(app, 'esm.mjs'), `
      import st, { createModel, tensor, backend } from 'segtorch';
      if (typeof createModel !== 'function' || typeof tensor !== 'function' || st.createModel !== createModel) process.exit(2);
      console.log(backend().libtorch);`)
    assert.match(sh(process.execPath, ['esm.mjs'], app), /^\d+\.\d+/)
  })

  it('installs the segtorch command (info, train --help) and the segtorch/report entry', () => {
    const bin = path.join(app, 'node_modules', '.bin', 'segtorch')
    assert.ok(fs.existsSync(bin), 'node_modules/.bin/segtorch')
    assert.match(sh(bin, ['info'], app), /^libtorch +\d+\.\d+/m)
    assert.match(sh(bin, ['train', '--help'], app), /--resume <path>/)
    const cjs = sh(process.execPath, ['-e', "const r = require('segtorch/report'); console.log(typeof r.writeReport, require('segtorch').report.writeReport === r.writeReport)"], app)
    assert.strictEqual(cjs.trim(), 'function true')
    const esm = sh(process.execPath, ['--input-type=module', '-e', "import { writeReport, curvesSvg } from 'segtorch/report'; console.log(typeof writeReport, typeof curvesSvg)"], app)
    assert.strictEqual(esm.trim(), 'function function')
  })

  it('ships type declarations that type-check a user program', () => {
    fs.writeFileSync(path.join(app, 'use.ts'), `
      import { createModel, tensor, Tensor } from 'segtorch';
      async function main (): Promise<void> {
        const m = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 2 });
        const x = tensor(new Float32Array(3 * 8 * 8), [1, 3, 8, 8]);
        const logits: Tensor<'float32', readonly [1, number, 8, 8]> = await m.forward(x);
        const labels: Tensor<'int32', readonly [1, 8, 8]> = await m.predict(x);
        void logits; void labels;
      }
      void main();`)
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
    sh(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'commonjs', '--target', 'es2022', '--lib', 'es2022,esnext.disposable', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules', '@types'), 'use.ts'], app)
  })

  it('throws one clear error when libtorch cannot be loaded', function () {
    // Another library posing as libc10.so.1.13 first on the library path stands in for a different
    // libtorch: the loader takes it and the addon's c10 symbols are missing.
    const libs = tmpdir('segtorch-badlib-')
    const impostor = ['/lib/x86_64-linux-gnu/libz.so.1', '/usr/lib/x86_64-linux-gnu/libz.so.1', '/lib/aarch64-linux-gnu/libz.so.1'].find((p) => fs.existsSync(p))
    if (impostor === undefined) this.skip()
    const addon = fs.readFileSync(path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`, 'segtorch.node')).toString('latin1')
    const soname = (addon.match(/libc10\.so[\w.]*/) ?? ['libc10.so'])[0] // e.g. libc10.so.1.13
    fs.copyFileSync(impostor as string, path.join(libs, soname))
    const r = spawnSync(process.execPath, ['-e', "try { require('segtorch') } catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })) }"],
      // Without SEGTORCH_ADDON: the prebuilt addon is the one whose libc10 the impostor stands for.
      { cwd: app, encoding: 'utf8', env: { ...process.env, LD_LIBRARY_PATH: libs, SEGTORCH_ADDON: '' } })
    assert.strictEqual(r.status, 0, r.stderr)
    const e = JSON.parse(r.stdout.trim())
    assert.strictEqual(e.name, 'SegtorchLoadError')
    assert.match(e.message, /could not be loaded/)
    assert.match(e.message, /undefined symbol/)
    assert.match(e.message, /apt-get install libtorch1\.13/)
    assert.match(e.message, /LIBTORCH=.* npm rebuild segtorch/)
  })
})
