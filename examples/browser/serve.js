#!/usr/bin/env node
// Serves the browser example on 127.0.0.1: the page, onnxruntime-web from node_modules (/vendor/:
// nothing comes from the network), an exported model (/model/model.onnx + model.json) and, with
// --files DIR, images (/files/...). Cross-origin isolated (COOP/COEP) so that WebAssembly threads work.
//
//   npx segtorch export runs/demo/model.segtorch --format onnx --out runs/demo/model.onnx
//   node examples/browser/serve.js --model runs/demo/model.onnx [--port 8080]
'use strict'
const fs = require('fs')
const http = require('http')
const path = require('path')

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.mjs': 'text/javascript', '.js': 'text/javascript', '.json': 'application/json',
  '.wasm': 'application/wasm', '.onnx': 'application/octet-stream', '.png': 'image/png', '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg', '.svg': 'image/svg+xml', '.css': 'text/css', '.map': 'application/json'
}

/** Starts the server; resolves to { server, url }. roots: URL prefix -> folder. */
function serve ({ model, files, port = 0, host = '127.0.0.1' } = {}) {
  // onnxruntime-web's package exports no package.json: find its dist/ from the main entry.
  let ortDist = path.dirname(require.resolve('onnxruntime-web', { paths: [__dirname, process.cwd()] }))
  while (path.basename(ortDist) !== 'dist' && path.dirname(ortDist) !== ortDist) ortDist = path.dirname(ortDist)
  const roots = [['/vendor/', ortDist], ['/', __dirname]]
  const aliases = new Map()
  if (model) {
    const base = model.replace(/\.onnx$/, '')
    aliases.set('/model/model.onnx', `${base}.onnx`)
    aliases.set('/model/model.json', `${base}.json`)
  }
  if (files) roots.unshift(['/files/', path.resolve(files)])
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent(new URL(req.url, 'http://x').pathname)
    let file = aliases.get(url)
    if (!file) {
      for (const [prefix, dir] of roots) {
        if (!url.startsWith(prefix)) continue
        const rel = url.slice(prefix.length) || 'index.html'
        const full = path.resolve(dir, rel)
        if (full === dir || full.startsWith(dir + path.sep)) file = full // never outside the root
        break
      }
    }
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' })
      res.end(`not found: ${url}`)
      return
    }
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cache-control': 'no-store'
    })
    fs.createReadStream(file).pipe(res)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve({ server, url: `http://${host}:${server.address().port}/` }))
  })
}

module.exports = { serve }

if (require.main === module) {
  const args = process.argv.slice(2)
  const opt = (name) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined }
  const model = opt('model')
  if (!model || !fs.existsSync(model)) {
    process.stderr.write('usage: node examples/browser/serve.js --model FILE.onnx [--files DIR] [--port N]\n  (FILE.json, written by exportOnnx, must sit next to it)\n')
    process.exit(2)
  }
  serve({ model, files: opt('files'), port: Number(opt('port') || 8080) }).then(({ url }) => {
    process.stdout.write(`segtorch browser example on ${url} (Ctrl-C to stop)\n`)
  }, (err) => { process.stderr.write(`${err.message}\n`); process.exit(1) })
}
