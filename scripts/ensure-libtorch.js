#!/usr/bin/env node
// Makes sure a libtorch to build against is present. Honours LIBTORCH / LIBTORCH_USE_PYTORCH.
// Otherwise looks for Debian/Ubuntu's libtorch-dev and, when run as root on such a system,
// installs it with apt-get; elsewhere it stops with a message naming what to install.
'use strict'
const fs = require('fs')
const { spawnSync } = require('child_process')
const { torchBuildPlan } = require('./torch-detect')

const CONFIGS = [
  '/usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake',
  '/usr/lib/aarch64-linux-gnu/cmake/Torch/TorchConfig.cmake',
  '/usr/lib/cmake/Torch/TorchConfig.cmake',
  '/usr/local/lib/cmake/Torch/TorchConfig.cmake',
  '/usr/share/cmake/Torch/TorchConfig.cmake'
]

function log (msg) { process.stderr.write(`segtorch: ${msg}\n`) }

function haveCommand (cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

function ensureLibtorch () {
  // LIBTORCH=DIR or LIBTORCH_USE_PYTORCH=1: read the ABI, C++ standard and CUDA needs from that torch
  // and pass them to CMake (the build's children inherit process.env); the user's own settings win.
  const plan = torchBuildPlan(process.env)
  if (plan) {
    Object.assign(process.env, plan.env)
    const set = Object.entries(plan.env).map(([k, v]) => `${k}=${v}`).join(' ')
    return `${plan.description}${set ? ` (set: ${set})` : ''}`
  }
  const found = CONFIGS.find((p) => fs.existsSync(p))
  if (found) return found
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  if (isRoot && haveCommand('apt-get')) {
    // OpenBLAS with it: Debian's libtorch links libblas.so.3, which is Netlib's reference BLAS unless
    // an optimised one is installed (the alternatives system then points at it). The OpenMP build
    // shares libtorch's OpenMP threads instead of starting its own.
    log('libtorch is missing: installing libtorch-dev and OpenBLAS with apt-get (this takes a few minutes) ...')
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    let r = spawnSync('apt-get', ['update', '-q'], { stdio: 'inherit', env })
    if (r.status === 0) r = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'libtorch-dev', 'libopenblas0-openmp'], { stdio: 'inherit', env })
    if (r.status !== 0) throw new Error('apt-get install libtorch-dev failed (see above)')
    const now = CONFIGS.find((p) => fs.existsSync(p))
    if (now) return now
  }
  throw new Error([
    'libtorch was not found, and segtorch needs it to build.',
    '  Debian/Ubuntu:  sudo apt-get install libtorch-dev   (then run the command again)',
    '  Any system:     LIBTORCH=/path/to/unpacked/libtorch npm install',
    '  With PyTorch:   LIBTORCH_USE_PYTORCH=1 npm install   (uses the libtorch inside pip\'s torch)'
  ].join('\n'))
}

// zlib's header: archive records are inflated with a bound (native/io/archive.cc). Debian's
// libtorch-dev brings it (through python3-dev); a LIBTORCH tree does not.
function haveZlibHeader () {
  return ['/usr/include/zlib.h', '/usr/local/include/zlib.h'].some((f) => fs.existsSync(f)) || !!process.env.ZLIB_ROOT
}

function ensureBuildTools () {
  const missing = ['cmake', 'c++'].filter((c) => !haveCommand(c))
  const zlib = haveZlibHeader()
  if (missing.length === 0 && zlib) return
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  if (isRoot && haveCommand('apt-get')) {
    log(`installing build tools (${[...missing, ...(zlib ? [] : ['zlib1g-dev'])].join(', ')}) with apt-get ...`)
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    spawnSync('apt-get', ['update', '-q'], { stdio: 'inherit', env })
    const r = spawnSync('apt-get', ['install', '-y', '-q', 'cmake', 'g++', 'ninja-build', 'zlib1g-dev'], { stdio: 'inherit', env })
    if (r.status === 0) return
  }
  if (missing.length) throw new Error(`missing build tools: ${missing.join(', ')}. Install cmake and a C++17 compiler (Debian/Ubuntu: apt-get install cmake g++ zlib1g-dev)`)
  throw new Error('missing zlib\'s development files (zlib.h). Debian/Ubuntu: apt-get install zlib1g-dev; Fedora: dnf install zlib-devel; or set ZLIB_ROOT to a zlib install')
}

// gloo's headers, which c10d's ProcessGroupGloo.hpp includes (distributed training on the CPU):
// Debian's libtorch-dev is built with Gloo but ships its headers in libgloo-dev, installed here the
// same way as libtorch-dev (root + apt-get). Elsewhere a note: segtorch builds without them, and
// distributed.init() then says what is missing. PyPI's torch wheel (2.15 checked) does not ship
// them either; an unpacked libtorch tree (LIBTORCH) may, in its include/.
const GLOO_HEADERS = ['/usr/include/gloo/config.h', '/usr/local/include/gloo/config.h']
function ensureGloo () {
  const own = process.env.LIBTORCH ? [`${process.env.LIBTORCH}/include/gloo/config.h`] : []
  if ([...own, ...GLOO_HEADERS].some((f) => fs.existsSync(f))) return
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  if (isRoot && haveCommand('apt-get')) {
    log('gloo headers are missing (distributed training): installing libgloo-dev with apt-get ...')
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    let r = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'libgloo-dev'], { stdio: 'inherit', env })
    if (r.status !== 0) {
      spawnSync('apt-get', ['update', '-q'], { stdio: 'inherit', env })
      r = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'libgloo-dev'], { stdio: 'inherit', env })
    }
    if (r.status === 0) return
  }
  log('note: gloo\'s headers were not found (Debian/Ubuntu: apt-get install libgloo-dev): segtorch builds without distributed training on the CPU')
}

// Both checks, for build scripts: names the libtorch found, or says what to install and exits.
function ensureToolchainOrExit () {
  try {
    log(`building against ${ensureLibtorch()}`)
    ensureBuildTools()
    ensureGloo()
  } catch (err) {
    log(err.message)
    process.exit(1)
  }
}

module.exports = { ensureLibtorch, ensureBuildTools, ensureGloo, ensureToolchainOrExit }

if (require.main === module) ensureToolchainOrExit()
