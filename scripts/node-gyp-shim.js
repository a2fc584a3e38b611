#!/usr/bin/env node
// prebuildify drives node-gyp (`node-gyp rebuild --target=X --devdir=D --release`); segtorch builds
// with cmake-js. This shim translates the call so that `prebuildify --node-gyp scripts/node-gyp-shim.js`
// builds through CMakeLists.txt and finds the addon in build/Release as it expects.
'use strict'
const { spawnSync } = require('child_process')
const path = require('path')

const args = process.argv.slice(2)
const debug = args.includes('--debug')
const target = (args.find((a) => a.startsWith('--target=')) || '').split('=')[1]
const arch = (args.find((a) => a.startsWith('--arch=')) || '').split('=')[1]
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js')
const cmd = ['compile', '--out', 'build']
if (debug) cmd.push('--debug')
if (target) cmd.push('--runtime-version', target)
if (arch) cmd.push('--arch', arch)
const r = spawnSync(process.execPath, [cmakeJs, ...cmd], { stdio: 'inherit' })
process.exit(r.status === null ? 1 : r.status)
