#!/usr/bin/env node
// Builds everything in a checkout: libtorch check (apt-get install when root), the native addon
// through prebuildify + cmake-js (prebuilds/<platform>-<arch>/), and the TypeScript (dist/).
// Incremental: a second run only rebuilds what changed.
'use strict'
const fs = require('fs')
const path = require('path')
const { spawnSync } = require('child_process')
const { ensureToolchainOrExit } = require('./ensure-libtorch')

const root = path.join(__dirname, '..')
function run (cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) {
    process.stderr.write(`segtorch: '${[cmd, ...args].join(' ')}' failed\n`)
    process.exit(r.status || 1)
  }
}
function bin (pkg, file) {
  return path.join(path.dirname(require.resolve(`${pkg}/package.json`, { paths: [root] })), file)
}

ensureToolchainOrExit()
// Native addon: prebuildify drives cmake-js through the node-gyp shim and copies the result.
run(process.execPath, [bin('prebuildify', 'bin.js'), '--napi', '--strip', '--target', process.versions.node,
  '--node-gyp', path.join(root, 'scripts', 'node-gyp-shim.js')])
// TypeScript
run(process.execPath, [bin('typescript', 'bin/tsc'), '-p', path.join(root, 'tsconfig.json')])
fs.copyFileSync(path.join(root, 'lib', 'index.mjs'), path.join(root, 'dist', 'index.mjs'))
fs.copyFileSync(path.join(root, 'lib', 'data', 'index.mjs'), path.join(root, 'dist', 'data', 'index.mjs'))
fs.copyFileSync(path.join(root, 'lib', 'report', 'index.mjs'), path.join(root, 'dist', 'report', 'index.mjs'))
