'use strict'
// Whether dist/ (tsc's output, built by `npm test`'s pretest) is current: every file of lib/ is
// older than dist/index.js. Plain JavaScript: test/child-register.js needs it before any
// TypeScript can load.
const fs = require('fs')
const path = require('path')

const ROOT = path.join(__dirname, '..')

function newestMtime (dir) {
  let t = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs)
  }
  return t
}

let current
/** True when dist/ was built from the lib/ on disk (checked once per process). */
function distCurrent () {
  if (current === undefined) {
    const index = path.join(ROOT, 'dist', 'index.js')
    current = fs.existsSync(index) && fs.statSync(index).mtimeMs >= newestMtime(path.join(ROOT, 'lib'))
  }
  return current
}

module.exports = { ROOT, distCurrent }
