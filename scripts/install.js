#!/usr/bin/env node
// npm's install step. segtorch ships a prebuilt addon (prebuilds/) and needs no install script:
// with --ignore-scripts (or npm 11 not yet approving scripts) it works as it is. When this runs:
//  - in a checkout (lib/ and tsconfig.json present): build everything (scripts/build.js);
//  - in an installed package: keep the prebuilt if it loads; otherwise build from source against
//    the libtorch found (system libtorch-dev, LIBTORCH=..., LIBTORCH_USE_PYTORCH=1).
'use strict'
const fs = require('fs')
const path = require('path')
const { spawnSync } = require('child_process')

const root = path.join(__dirname, '..')
if (fs.existsSync(path.join(root, 'lib', 'index.ts')) && fs.existsSync(path.join(root, 'tsconfig.json'))) {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'build.js')], { cwd: root, stdio: 'inherit' })
  process.exit(r.status === null ? 1 : r.status)
}

const forceSource = process.env.npm_config_build_from_source === 'true' || !!process.env.LIBTORCH || process.env.LIBTORCH_USE_PYTORCH === '1'
if (!forceSource) {
  try {
    require('node-gyp-build')(root)
    process.exit(0)
  } catch (err) {
    process.stderr.write(`segtorch: the prebuilt addon does not load here (${err.message.split('\n')[0]}); building from source\n`)
  }
}
require('./ensure-libtorch').ensureToolchainOrExit()
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json', { paths: [root] })), 'bin', 'cmake-js')
const r = spawnSync(process.execPath, [cmakeJs, 'rebuild', '--out', 'build'], { cwd: root, stdio: 'inherit' })
process.exit(r.status === null ? 1 : r.status)
