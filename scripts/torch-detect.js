'use strict'
// Building against a PyTorch install (LIBTORCH_USE_PYTORCH=1) or an unpacked libtorch (LIBTORCH=DIR)
// as its user would: find the torch that the user's Python imports, and read from it what CMake needs
// (the C++ ABI, the C++ standard its headers require, whether it carries CUDA and whether a CUDA
// toolkit is here to link it). ensure-libtorch.js turns the plan into the environment CMakeLists.txt
// reads (LIBTORCH, LIBTORCH_CPU_ONLY, LIBTORCH_CXX11_ABI, SEGTORCH_CXX_STANDARD); variables the user
// set win. Pure functions over an `env` so that test/build-detect.test.ts checks them on a fake torch
// tree with the real layout, without downloading torch.
const fs = require('fs')
const path = require('path')
const { spawnSync } = require('child_process')

/** First executable called `name` on env.PATH (full path), or null. */
function which (name, env) {
  for (const dir of (env.PATH || '').split(path.delimiter)) {
    if (!dir) continue
    const file = path.join(dir, name)
    try {
      fs.accessSync(file, fs.constants.X_OK)
      if (fs.statSync(file).isFile()) return file
    } catch {}
  }
  return null
}

/** The Python to ask: PYTHON, else python3 then python on PATH. { python, how } or an Error. */
function findPython (env) {
  if (env.PYTHON) return { python: env.PYTHON, how: 'PYTHON' }
  for (const name of ['python3', 'python']) {
    const p = which(name, env)
    if (p) return { python: p, how: `the first ${name} on PATH` }
  }
  throw new Error('LIBTORCH_USE_PYTORCH=1 but no python3 or python is on PATH: activate the environment that has torch, or set PYTHON=/path/to/python')
}

const PROBE = [
  'import json, os, sys',
  'import torch',
  'abi = getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", None)',
  'print(json.dumps({"dir": os.path.dirname(os.path.realpath(torch.__file__)), "version": str(torch.__version__),',
  '  "cuda": getattr(torch.version, "cuda", None), "abi": None if abi is None else int(bool(abi)), "python": sys.executable}))'
].join('\n')

/** What `python -c 'import torch'` says about its torch: { dir, version, cuda, abi, python }, or an Error naming the Python. */
function pythonTorch (python, how, env) {
  const r = spawnSync(python, ['-c', PROBE], { encoding: 'utf8', env, cwd: '/', timeout: 120000 })
  if (r.error) throw new Error(`LIBTORCH_USE_PYTORCH=1 but ${how} (${python}) cannot be run: ${r.error.message}. Set PYTHON=/path/to/python`)
  if (r.status !== 0) {
    const last = (r.stderr || '').trim().split('\n').pop()
    throw new Error(`LIBTORCH_USE_PYTORCH=1 but ${how} (${python}) cannot import torch (${last}). Install it there (pip install torch) or set PYTHON to the Python that has it`)
  }
  const info = JSON.parse(r.stdout.trim().split('\n').pop())
  if (!fs.existsSync(path.join(info.dir, 'include', 'torch')) || !fs.existsSync(path.join(info.dir, 'lib'))) {
    throw new Error(`the torch that ${python} imports (${info.version} at ${info.dir}) has no C++ headers and libraries (include/torch, lib/): it cannot be built against`)
  }
  return info
}

/** What a libtorch tree (include/, lib/, share/cmake/Torch/) says about itself. */
function inspectTree (dir) {
  const read = (f) => { try { return fs.readFileSync(path.join(dir, f), 'utf8') } catch { return '' } }
  const version = (read('version.py').match(/^__version__\s*=\s*['"]([^'"]+)['"]/m) || read('build-version').match(/^(\S+)/m) || [])[1] || ''
  const cxx20 = /cxx_std_20/.test(read('share/cmake/Torch/TorchConfig.cmake')) || /C\+\+20 or later/.test(read('include/torch/csrc/api/include/torch/all.h'))
  const cudaLibs = fs.existsSync(path.join(dir, 'lib', 'libtorch_cuda.so'))
  return { version, cxxStandard: cxx20 ? 20 : 17, cudaLibs }
}

/** The C++ ABI a libc10.so was built with, from the names it defines (std::__cxx11 = 1); null if unreadable. */
function abiFromSymbols (lib) {
  if (!fs.existsSync(lib)) return null
  const r = spawnSync('nm', ['-D', '--defined-only', lib], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
  if (r.status !== 0 || !r.stdout) return null
  return r.stdout.includes('B5cxx11') ? 1 : 0
}

/** A CUDA toolkit's nvcc: CUDA_HOME / CUDA_PATH, PATH, /usr/local/cuda. Null when none. */
function cudaToolkit (env) {
  for (const root of [env.CUDA_HOME, env.CUDA_PATH, env.CUDA_TOOLKIT_ROOT_DIR]) {
    if (root && fs.existsSync(path.join(root, 'bin', 'nvcc'))) return path.join(root, 'bin', 'nvcc')
  }
  // (SEGTORCH_NO_SYSTEM_CUDA=1: a test hook that ignores /usr/local/cuda.)
  return which('nvcc', env) || (!env.SEGTORCH_NO_SYSTEM_CUDA && fs.existsSync('/usr/local/cuda/bin/nvcc') ? '/usr/local/cuda/bin/nvcc' : null)
}

/**
 * The build plan for LIBTORCH_USE_PYTORCH=1 or LIBTORCH=DIR: { env: the variables to set (only those
 * the user did not set), description }. Null when neither is asked for (the system libtorch).
 */
function torchBuildPlan (env) {
  let dir; let version; let abi = null; let cuda = null; let from
  if (env.LIBTORCH) {
    dir = env.LIBTORCH
    if (!fs.existsSync(dir)) throw new Error(`LIBTORCH=${dir} does not exist`)
    from = `LIBTORCH=${dir}`
  } else if (env.LIBTORCH_USE_PYTORCH === '1') {
    const { python, how } = findPython(env)
    const t = pythonTorch(python, how, env)
    dir = t.dir; version = t.version; abi = t.abi; cuda = t.cuda
    from = `the torch ${how} imports (${t.python})`
  } else {
    return null
  }
  const tree = inspectTree(dir)
  version = version || tree.version || 'unknown version'
  if (abi === null) abi = abiFromSymbols(path.join(dir, 'lib', 'libc10.so'))
  const withCuda = !!cuda || tree.cudaLibs
  const nvcc = withCuda ? cudaToolkit(env) : null
  const cpuOnly = withCuda && !nvcc
  const plan = {}
  // CMake's TorchConfig wants a CUDA toolkit for a CUDA build of torch: without one, link its CPU part.
  if (cpuOnly) plan.LIBTORCH_CPU_ONLY = '1'
  if (abi !== null) plan.LIBTORCH_CXX11_ABI = String(abi)
  if (tree.cxxStandard === 20) plan.SEGTORCH_CXX_STANDARD = '20'
  if (env.LIBTORCH_USE_PYTORCH === '1' && !env.LIBTORCH) plan.LIBTORCH = dir
  const set = {}
  for (const [k, v] of Object.entries(plan)) if (env[k] === undefined || env[k] === '') set[k] = v
  const cudaName = cuda ? `CUDA ${cuda}` : 'CUDA'
  const mode = !withCuda
    ? 'CPU build of torch'
    : nvcc ? `${cudaName} build of torch, linked with the toolkit at ${path.dirname(path.dirname(nvcc))}` : `${cudaName} build of torch, linking its CPU part only (no CUDA toolkit here: CUDA_HOME, nvcc on PATH or /usr/local/cuda)`
  const description = `torch ${version} at ${dir}, from ${from}; ${mode}; C++${env.SEGTORCH_CXX_STANDARD || tree.cxxStandard}` +
    `${(env.LIBTORCH_CXX11_ABI || set.LIBTORCH_CXX11_ABI) ? `, _GLIBCXX_USE_CXX11_ABI=${env.LIBTORCH_CXX11_ABI || set.LIBTORCH_CXX11_ABI}` : ''}`
  return { env: set, description, dir, version, cpuOnly, cxxStandard: tree.cxxStandard }
}

module.exports = { which, findPython, pythonTorch, inspectTree, abiFromSymbols, cudaToolkit, torchBuildPlan }
