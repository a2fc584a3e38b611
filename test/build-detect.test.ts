// How `LIBTORCH_USE_PYTORCH=1 npm install` / `LIBTORCH=DIR npm install` find what to build against
// (scripts/torch-detect.js), on fake torch trees with the real layout: a `torch` package that a real
// Python imports (version, torch.version.cuda, torch._C._GLIBCXX_USE_CXX11_ABI), include/ and lib/,
// share/cmake/Torch/TorchConfig.cmake, and a fake nvcc. Nothing is downloaded.
import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { ROOT, tmpdir } from './helpers'

// eslint-disable-next-line @typescript-eslint/no-var-requires
const detect = require(path.join(ROOT, 'scripts', 'torch-detect.js'))

interface FakeTorch { site: string, torch: string }

function fakeTorch (root: string, o: { version: string, cuda: string | null, abi: boolean, cxx20: boolean }): FakeTorch {
  const site = path.join(root, 'site-packages')
  const torch = path.join(site, 'torch')
  fs.mkdirSync(path.join(torch, 'include', 'torch', 'csrc', 'api', 'include', 'torch'), { recursive: true })
  fs.mkdirSync(path.join(torch, 'lib'), { recursive: true })
  fs.mkdirSync(path.join(torch, 'share', 'cmake', 'Torch'), { recursive: true })
  fs.writeFileSync(path.join(torch, '__init__.py'), `__version__ = '${o.version}'\nfrom . import version, _C\n`)
  fs.writeFileSync(path.join(torch, 'version.py'), `__version__ = '${o.version}'\ncuda = ${o.cuda === null ? 'None' : `'${o.cuda}'`}\n`)
  fs.writeFileSync(path.join(torch, '_C.py'), `_GLIBCXX_USE_CXX11_ABI = ${o.abi ? 'True' : 'False'}\n`)
  fs.writeFileSync(path.join(torch, 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'all.h'),
    o.cxx20 ? '#if !defined(_MSC_VER) && __cplusplus < 202002L\n#error C++20 or later compatible compiler is required to use PyTorch.\n#endif\n' : '#pragma once\n')
  fs.writeFileSync(path.join(torch, 'share', 'cmake', 'Torch', 'TorchConfig.cmake'), o.cxx20 ? 'target_compile_features(torch INTERFACE cxx_std_20)\n' : '# C++17\n')
  for (const lib of ['libtorch_cpu.so', 'libc10.so', ...(o.cuda ? ['libtorch_cuda.so'] : [])]) fs.writeFileSync(path.join(torch, 'lib', lib), '')
  return { site, torch }
}

// A python3 on PATH that imports the fake torch (the real interpreter with PYTHONPATH set).
function pythonWith (dir: string, site: string | null): string {
  const real = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim()
  const bin = path.join(dir, 'bin')
  fs.mkdirSync(bin, { recursive: true })
  const py = path.join(bin, 'python3')
  fs.writeFileSync(py, `#!/bin/sh\n${site ? `PYTHONPATH='${site}' ` : 'PYTHONPATH= '}exec '${real}' -S "$@"\n`, { mode: 0o755 })
  return bin
}

describe('build against a PyTorch install (scripts/torch-detect.js)', () => {
  let dir: string
  let cuda: FakeTorch
  let cpu: FakeTorch
  let venvBin: string
  before(function () {
    if (spawnSync('python3', ['-c', 'pass']).status !== 0) {
      console.log('      (skipped: no python3 on PATH)')
      this.skip()
    }
    dir = tmpdir()
    cuda = fakeTorch(path.join(dir, 'cuda'), { version: '2.15.0+cu132', cuda: '13.2', abi: true, cxx20: true })
    cpu = fakeTorch(path.join(dir, 'cpu'), { version: '1.13.1', cuda: null, abi: false, cxx20: false })
    venvBin = pythonWith(path.join(dir, 'venv'), cuda.site)
  })
  const base = (extra: Record<string, string>): Record<string, string> => ({ PATH: `${venvBin}:/usr/bin:/bin`, SEGTORCH_NO_SYSTEM_CUDA: '1', ...extra })

  it('uses the torch that the first python3 on PATH imports (a venv first on PATH), not a system one', () => {
    const plan = detect.torchBuildPlan(base({ LIBTORCH_USE_PYTORCH: '1' }))
    assert.strictEqual(plan.dir, fs.realpathSync(cuda.torch))
    assert.strictEqual(plan.env.LIBTORCH, fs.realpathSync(cuda.torch))
    assert.match(plan.description, /torch 2\.15\.0\+cu132 at .*cuda\/site-packages\/torch, from the torch the first python3 on PATH imports/)
  })

  it('a CUDA torch without a CUDA toolkit links its CPU part, with its ABI and C++20', () => {
    const plan = detect.torchBuildPlan(base({ LIBTORCH_USE_PYTORCH: '1' }))
    assert.deepStrictEqual({ ...plan.env, LIBTORCH: undefined }, { LIBTORCH_CPU_ONLY: '1', LIBTORCH_CXX11_ABI: '1', SEGTORCH_CXX_STANDARD: '20', LIBTORCH: undefined })
    assert.match(plan.description, /CUDA 13\.2 build of torch, linking its CPU part only \(no CUDA toolkit here/)
    assert.match(plan.description, /C\+\+20, _GLIBCXX_USE_CXX11_ABI=1/)
  })

  it('a CUDA torch with a CUDA toolkit (nvcc on PATH or CUDA_HOME) links CUDA', () => {
    const toolkit = path.join(dir, 'cuda-13.2')
    fs.mkdirSync(path.join(toolkit, 'bin'), { recursive: true })
    fs.writeFileSync(path.join(toolkit, 'bin', 'nvcc'), '#!/bin/sh\n', { mode: 0o755 })
    for (const env of [base({ LIBTORCH_USE_PYTORCH: '1', CUDA_HOME: toolkit }), { ...base({ LIBTORCH_USE_PYTORCH: '1' }), PATH: `${venvBin}:${toolkit}/bin:/usr/bin:/bin` }]) {
      const plan = detect.torchBuildPlan(env)
      assert.strictEqual(plan.env.LIBTORCH_CPU_ONLY, undefined)
      assert.strictEqual(plan.cpuOnly, false)
      assert.match(plan.description, new RegExp(`linked with the toolkit at ${toolkit}`))
    }
  })

  it('PYTHON wins over PATH; a CPU torch 1.13 keeps C++17 and its ABI', () => {
    const bin = pythonWith(path.join(dir, 'other'), cpu.site)
    const plan = detect.torchBuildPlan(base({ LIBTORCH_USE_PYTORCH: '1', PYTHON: path.join(bin, 'python3') }))
    assert.strictEqual(plan.dir, fs.realpathSync(cpu.torch))
    assert.deepStrictEqual({ ...plan.env, LIBTORCH: undefined }, { LIBTORCH_CXX11_ABI: '0', LIBTORCH: undefined })
    assert.match(plan.description, /torch 1\.13\.1 .* from the torch PYTHON imports .*; CPU build of torch; C\+\+17, _GLIBCXX_USE_CXX11_ABI=0/)
  })

  it('what the user set wins (LIBTORCH_CPU_ONLY, SEGTORCH_CXX_STANDARD, LIBTORCH_CXX11_ABI)', () => {
    const plan = detect.torchBuildPlan(base({ LIBTORCH_USE_PYTORCH: '1', SEGTORCH_CXX_STANDARD: '23', LIBTORCH_CXX11_ABI: '0' }))
    assert.strictEqual(plan.env.SEGTORCH_CXX_STANDARD, undefined)
    assert.strictEqual(plan.env.LIBTORCH_CXX11_ABI, undefined)
    assert.strictEqual(plan.env.LIBTORCH_CPU_ONLY, '1')
    assert.match(plan.description, /C\+\+23, _GLIBCXX_USE_CXX11_ABI=0/)
  })

  it('LIBTORCH=DIR: the tree itself says its version, C++ standard and CUDA', () => {
    const plan = detect.torchBuildPlan(base({ LIBTORCH: cuda.torch }))
    assert.strictEqual(plan.env.LIBTORCH, undefined)
    assert.strictEqual(plan.env.LIBTORCH_CPU_ONLY, '1')
    assert.strictEqual(plan.env.SEGTORCH_CXX_STANDARD, '20')
    assert.match(plan.description, /torch 2\.15\.0\+cu132 at .* from LIBTORCH=/)
    assert.strictEqual(detect.torchBuildPlan(base({})), null, 'neither asked for: the system libtorch')
  })

  it('clear errors: no Python, a Python without torch, a torch without C++ files, a missing LIBTORCH', () => {
    assert.throws(() => detect.torchBuildPlan({ PATH: path.join(dir, 'empty'), LIBTORCH_USE_PYTORCH: '1' }), /no python3 or python is on PATH: activate the environment that has torch, or set PYTHON/)
    const bare = pythonWith(path.join(dir, 'bare'), null)
    assert.throws(() => detect.torchBuildPlan(base({ LIBTORCH_USE_PYTORCH: '1', PYTHON: path.join(bare, 'python3') })), /cannot import torch \(ModuleNotFoundError: No module named 'torch'\)\. Install it there \(pip install torch\) or set PYTHON/)
    const headless = fakeTorch(path.join(dir, 'headless'), { version: '2.15.0', cuda: null, abi: true, cxx20: true })
    fs.rmSync(path.join(headless.torch, 'include'), { recursive: true })
    const hb = pythonWith(path.join(dir, 'headless-venv'), headless.site)
    assert.throws(() => detect.torchBuildPlan(base({ LIBTORCH_USE_PYTORCH: '1', PYTHON: path.join(hb, 'python3') })), /has no C\+\+ headers and libraries \(include\/torch, lib\/\): it cannot be built against/)
    assert.throws(() => detect.torchBuildPlan(base({ LIBTORCH: path.join(dir, 'nope') })), /LIBTORCH=.*nope does not exist/)
  })

  it('ensure-libtorch passes the plan to the build through the environment and names the torch', () => {
    const r = spawnSync(process.execPath, ['-e', `
      const e = require(${JSON.stringify(path.join(ROOT, 'scripts', 'ensure-libtorch.js'))})
      const d = e.ensureLibtorch()
      console.log(JSON.stringify({ d, LIBTORCH: process.env.LIBTORCH, CPU: process.env.LIBTORCH_CPU_ONLY, STD: process.env.SEGTORCH_CXX_STANDARD }))`],
    { encoding: 'utf8', env: base({ LIBTORCH_USE_PYTORCH: '1' }) })
    assert.strictEqual(r.status, 0, r.stderr)
    const o = JSON.parse(r.stdout)
    assert.strictEqual(o.LIBTORCH, fs.realpathSync(cuda.torch))
    assert.strictEqual(o.CPU, '1')
    assert.strictEqual(o.STD, '20')
    assert.match(o.d, /^torch 2\.15\.0\+cu132 at .*\(set: LIBTORCH_CPU_ONLY=1 LIBTORCH_CXX11_ABI=1 SEGTORCH_CXX_STANDARD=20 LIBTORCH=/)
  })
})
