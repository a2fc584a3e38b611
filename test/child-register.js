'use strict'
// `node -r test/child-register.js`: how the tests run a child process's TypeScript (a worker, an
// `-e` script). ts-node transpiles the child's own files; lib/ comes from its compiled dist/ when
// that is current (test/dist-current.js), since ts-node would transpile all of lib/ again in
// every child (about 2.5 s of a 2-core machine per process; the suite starts over a hundred).
// With lib/ changed since the last build, everything is transpiled from source, as before.
require('ts-node/register/transpile-only')
const Module = require('module')
const fs = require('fs')
const path = require('path')
const { ROOT, distCurrent } = require('./dist-current')

if (distCurrent()) {
  const lib = path.join(ROOT, 'lib') + path.sep
  const dist = path.join(ROOT, 'dist')
  const resolve = Module._resolveFilename
  Module._resolveFilename = function (request, parent, ...rest) {
    const file = resolve.call(this, request, parent, ...rest)
    if (file.startsWith(lib) && file.endsWith('.ts')) {
      const built = path.join(dist, file.slice(lib.length, -3) + '.js')
      if (fs.existsSync(built)) return built
    }
    return file
  }
}
