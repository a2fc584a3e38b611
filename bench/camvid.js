#!/usr/bin/env node
// bench/camvid: train PSPNet-ResNet18 from scratch on CamVid (../shared/data/camvid) at reduced
// resolution for a fixed wall-clock budget, then evaluate on its val split -- segtorch and PyTorch
// (Debian's python3-torch, the same libtorch) with the same recipe, in the same run:
//   - the same model: PyTorch's copy is built by bench/camvid.py and starts from segtorch's initial
//     weights (saveStateDict -> load_state_dict(strict=True)); its forward on one batch is checked
//     against ours before training;
//   - the same data: images decoded and resized once here, written to a temporary folder that both
//     read; the same sample order and flips (one seeded list, consumed in order by both);
//   - the same optimisation: SGD momentum 0.9, weight decay 1e-4, lr 0.01 with a poly(0.9) decay over
//     the wall-clock budget (lr = lr0 * (1 - elapsed / budget)^0.9), cross-entropy (void ignored) plus
//     PSPNet's auxiliary loss (weight 0.4);
//   - the same evaluation: whole val images, argmax; one confusion-matrix code (this file) scores both.
// Runs (--runs): segtorch:auto (this library's defaults: bf16 + channels-last where the CPU has native
// bf16, else fp32), segtorch:fp32, pytorch:fp32 (PyTorch's default), pytorch:bf16 (channels_last +
// bf16 autocast, PyTorch at its best). With --steps N every run trains exactly N steps instead of for
// the time budget (used to compare bf16 with fp32 training at equal work).
// One more run, torchvision:mbv3, is a reference with its own model and recipe, not a copy of ours:
// "what a PyTorch user runs" -- PyTorch 2.x from PyPI (the venv of scripts/pytorch-venv.sh) training
// torchvision's deeplabv3_mobilenet_v3_large from scratch (weights=None, weights_backbone=None, no aux
// head) with AdamW lr 2e-3, weight decay 1e-4, poly(0.9) over the same budget, batch 8, cross-entropy
// (void ignored), on the same data and the same sample/flip stream (bench/camvid_torchvision.py). Its
// python is --python PATH, else $TORCHVISION_PYTHON, else $SEGTORCH_PY_VENV/bin/python (default
// ~/.cache/segtorch-pytorch, made by scripts/pytorch-venv.sh). $PYTHON (default Debian's /usr/bin/python3,
// whose torch is the libtorch segtorch links) stays the python of the pytorch:* runs.
// recipe:NAME (recipe:camvid-cpu) is segtorch's named recipe as a user runs it (recipe() ->
// createModel, loader over the CamVid files with its own augmentation, fit), its budget and size set
// to this run's; it is what issue 13 compares with torchvision:mbv3.
// Every run's per-class val IoU is in the table and in the JSON results (perClassIoU).
//
// usage: node bench/camvid.js [--budget 300] [--steps N] [--size 180x240] [--batch 8] [--os 16]
//          [--runs segtorch:auto,pytorch:fp32,torchvision:mbv3,...] [--data ../shared/data/camvid] [--seed 1]
//          [--python PATH (torchvision:* runs)]
// The 1500 s side by side: node bench/camvid.js --budget 1500 --runs recipe:camvid-cpu,torchvision:mbv3
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const sharp = require('sharp')
const st = require('../dist/index.js')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const budget = Number(opt('budget', '300'))
const fixedSteps = opt('steps', '') ? Number(opt('steps')) : 0
const [H, W] = opt('size', '180x240').split('x').map(Number)
const batch = Number(opt('batch', '8'))
const outputStride = Number(opt('os', '16'))
const seed = Number(opt('seed', '1'))
const lr0 = Number(opt('lr', '0.01'))
const dataRoot = path.resolve(opt('data', path.join(__dirname, '..', '..', 'shared', 'data', 'camvid')))
const runs = opt('runs', 'segtorch:auto,segtorch:fp32,pytorch:fp32,pytorch:bf16').split(',')
const python = process.env.PYTHON || '/usr/bin/python3'
const tvVenv = process.env.SEGTORCH_PY_VENV || path.join(os.homedir(), '.cache', 'segtorch-pytorch')
const tvPython = opt('python', process.env.TORCHVISION_PYTHON || path.join(tvVenv, 'bin', 'python'))
const TORCHVISION = { mbv3: 'deeplabv3_mobilenet_v3_large' } // torchvision:<kind> -> bench/camvid_torchvision.py's model
const CLASSES = ['Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist']
const NC = CLASSES.length
const log = (s) => process.stderr.write(`[camvid ${new Date().toISOString().slice(11, 19)}] ${s}\n`)

async function decode (split) {
  const dir = path.join(dataRoot, split)
  const names = fs.readdirSync(dir).filter((f) => f.endsWith('.png')).sort()
  const x = Buffer.alloc(names.length * 3 * H * W)
  const y = Buffer.alloc(names.length * H * W)
  for (let n = 0; n < names.length; n++) {
    const img = await sharp(path.join(dir, names[n])).removeAlpha().resize(W, H, { fit: 'fill' }).raw().toBuffer()
    const lab = await sharp(path.join(dataRoot, `${split}annot`, names[n])).extractChannel(0).resize(W, H, { fit: 'fill', kernel: 'nearest' }).raw().toBuffer()
    const o = n * 3 * H * W
    for (let i = 0; i < H * W; i++) {
      x[o + i] = img[3 * i]; x[o + H * W + i] = img[3 * i + 1]; x[o + 2 * H * W + i] = img[3 * i + 2]
      const c = lab[i]
      y[n * H * W + i] = c < NC ? c : 255 // void (11) -> ignore
    }
  }
  return { n: names.length, x, y }
}

// One seeded sample order for every run: shuffled epochs, one flip flag per sample.
function order (n, count) {
  let s = seed >>> 0
  const r = () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296 }
  const idx = new Int32Array(count); const flip = new Uint8Array(count)
  for (let e = 0; e * n < count; e++) {
    const p = Array.from({ length: n }, (_, i) => i)
    for (let i = n - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [p[i], p[j]] = [p[j], p[i]] }
    for (let i = 0; i < n && e * n + i < count; i++) { idx[e * n + i] = p[i]; flip[e * n + i] = r() < 0.5 ? 1 : 0 }
  }
  return { idx, flip }
}

function fillBatch (train, ord, step, xb, yb) {
  const px = H * W
  for (let b = 0; b < batch; b++) {
    const k = step * batch + b
    const n = ord.idx[k]; const f = ord.flip[k]
    for (let c = 0; c < 3; c++) {
      const src = (n * 3 + c) * px; const dst = (b * 3 + c) * px
      if (!f) { train.x.copy(xb, dst, src, src + px); continue }
      for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) xb[dst + i * W + j] = train.x[src + i * W + W - 1 - j]
    }
    const src = n * px; const dst = b * px
    if (!f) { train.y.copy(yb, dst, src, src + px); continue }
    for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) yb[dst + i * W + j] = train.y[src + i * W + W - 1 - j]
  }
}

function score (pred, val) {
  const cm = new Float64Array(NC * NC)
  for (let i = 0; i < val.y.length; i++) { const t = val.y[i]; if (t < NC) cm[t * NC + pred[i]]++ }
  const iou = []; let correct = 0; let total = 0
  for (let c = 0; c < NC; c++) {
    let row = 0; let col = 0
    for (let k = 0; k < NC; k++) { row += cm[c * NC + k]; col += cm[k * NC + c] }
    const inter = cm[c * NC + c]; const union = row + col - inter
    iou.push(union > 0 ? inter / union : NaN)
    correct += inter; total += row
  }
  const present = iou.filter((v) => !Number.isNaN(v))
  return { mIoU: present.reduce((a, b) => a + b, 0) / present.length, pixelAccuracy: correct / total, perClassIoU: Object.fromEntries(CLASSES.map((c, i) => [c, iou[i]])) }
}

// Labels of every decoded val image (whole image, argmax), as bytes in val.y's layout.
async function predictVal (model, val, options) {
  const pred = Buffer.alloc(val.y.length)
  for (let n = 0; n < val.n; n++) {
    const x = st.tensor(new Uint8Array(val.x.subarray(n * 3 * H * W, (n + 1) * 3 * H * W)), [1, 3, H, W])
    const p = await model.predict(x, options)
    pred.set(p.dataSync(), n * H * W) // int32 labels -> bytes
    p.dispose()
  }
  return pred
}

async function runOurs (precision, dir, train, val, ord, initFile) {
  const model = await st.createModel({ arch: 'pspnet', backbone: 'resnet18', numClasses: NC, outputStride, aux: true })
  await model.loadStateDict(initFile)
  // 'auto': this library's defaults (no options); 'fp32': fp32 in PyTorch's default NCHW layout.
  const fast = precision === 'auto' ? {} : { precision: 'fp32', channelsLast: false }
  const xb = Buffer.alloc(batch * 3 * H * W); const yb = Buffer.alloc(batch * H * W)
  const losses = []
  const t0 = process.hrtime.bigint()
  const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9
  let step = 0
  while (fixedSteps ? step < fixedSteps : elapsed() < budget) {
    if ((step + 1) * batch > ord.idx.length) throw new Error('sample order exhausted: raise the order length')
    fillBatch(train, ord, step, xb, yb)
    const frac = fixedSteps ? step / fixedSteps : elapsed() / budget
    const lr = lr0 * Math.pow(Math.max(0, 1 - frac), 0.9)
    const r = await model.trainStep(st.tensor(new Uint8Array(xb), [batch, 3, H, W]), st.tensor(new Uint8Array(yb), [batch, H, W]),
      { optimizer: { type: 'sgd', lr, momentum: 0.9, weightDecay: 1e-4 }, auxWeight: 0.4, ignoreIndex: 255, ...fast })
    losses.push(r.loss)
    step++
    if (step % 10 === 0) log(`segtorch:${precision} step ${step} loss ${r.loss.toFixed(3)} lr ${lr.toFixed(4)} ${elapsed().toFixed(0)} s`)
  }
  const trainSeconds = elapsed()
  const pred = await predictVal(model, val, fast)
  model.dispose()
  return { steps: step, trainSeconds, imagesPerSecond: step * batch / trainSeconds, losses, pred }
}

// recipe:NAME (e.g. recipe:camvid-cpu): segtorch's named recipe as a user runs it (recipe() -> createModel,
// loader over the CamVid files with the recipe's resize / scale / crop / flip / jitter, fit with its
// optimizer, loss and schedule) for the same budget; its predictions on the same decoded val images are
// scored by the same code. Overridden here only: the budget (--budget / --steps) and the size (--size).
async function runRecipe (name, val) {
  const ds = st.data.camvid(dataRoot, 'train')
  const over = { resize: [H, W], ...(fixedSteps ? { iterations: fixedSteps, timeLimit: undefined } : { timeLimit: budget }) }
  if (st.recipes[name].options.crop) over.crop = [H, W]
  const plan = await st.recipe(name, over, ds)
  log(`recipe:${name}: ${JSON.stringify(plan.options)}`)
  const model = await st.createModel({ ...plan.model, numClasses: NC })
  const losses = []
  const t0 = process.hrtime.bigint()
  const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9
  const h = await model.fit(st.data.loader(ds, { ...plan.loader, seed }), {
    ...plan.fit,
    seed,
    onStep: (s) => { losses.push(s.loss); if (s.step % 50 === 0) log(`recipe:${name} step ${s.step} loss ${s.loss.toFixed(3)} lr ${s.lr.toExponential(2)} ${elapsed().toFixed(0)} s`) }
  })
  const trainSeconds = elapsed()
  const pred = await predictVal(model, val, {})
  const info = model.info()
  model.dispose()
  return { steps: h.steps, trainSeconds, imagesPerSecond: h.steps * plan.loader.batchSize / trainSeconds, losses, pred, model: `${info.arch}-${info.backbone}`, optimizer: plan.options.optimizer, parameters: info.parameters, options: plan.options }
}

// torchvision:mbv3: the PyTorch 2.x reference (its own model and recipe; see the header).
function runTorchvision (kind, dir, trainN, valN) {
  if (!TORCHVISION[kind]) throw new Error(`unknown run torchvision:${kind} (known: ${Object.keys(TORCHVISION).map((k) => 'torchvision:' + k).join(', ')})`)
  if (!fs.existsSync(tvPython)) throw new Error(`no python for torchvision:${kind} at ${tvPython}: run scripts/pytorch-venv.sh, or pass --python PATH`)
  const tag = `torchvision-${kind}`
  const r = spawnSync(tvPython, [path.join(__dirname, 'camvid_torchvision.py'), '--dir', dir, '--tag', tag,
    '--budget', String(budget), '--steps', String(fixedSteps), '--size', `${H}x${W}`, '--batch', String(batch),
    '--train-n', String(trainN), '--val-n', String(valN), '--classes', String(NC), '--threads', String(st.backend().threads)],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 })
  if (r.status !== 0) throw new Error(`bench/camvid_torchvision.py failed (${r.status})`)
  const res = JSON.parse(r.stdout.trim().split('\n').pop())
  res.pred = fs.readFileSync(path.join(dir, `pred-${tag}.bin`))
  return res
}

function runPyTorch (precision, dir, initFile, trainN, valN) {
  const r = spawnSync(python, [path.join(__dirname, 'camvid.py'), '--dir', dir, '--init', initFile, '--precision', precision,
    '--budget', String(budget), '--steps', String(fixedSteps), '--size', `${H}x${W}`, '--batch', String(batch), '--os', String(outputStride),
    '--lr', String(lr0), '--train-n', String(trainN), '--val-n', String(valN), '--classes', String(NC), '--threads', String(st.backend().threads)],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 })
  if (r.status !== 0) throw new Error(`bench/camvid.py failed (${r.status})`)
  const res = JSON.parse(r.stdout.trim().split('\n').pop())
  res.pred = fs.readFileSync(path.join(dir, `pred-${precision}.bin`))
  return res
}

;(async () => {
  const started = Date.now()
  const b = st.backend()
  log(`decoding CamVid from ${dataRoot} at ${H}x${W}`)
  const train = await decode('train'); const val = await decode('val')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segtorch-camvid-'))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  fs.writeFileSync(path.join(dir, 'train-x.bin'), train.x); fs.writeFileSync(path.join(dir, 'train-y.bin'), train.y)
  fs.writeFileSync(path.join(dir, 'val-x.bin'), val.x)
  // Enough samples for the fastest run: 200 epochs (torchvision:mbv3 does about 72 in 1500 s on 2 idle
  // cores). A longer list only appends epochs: the first ones are the same whatever its length.
  const ord = order(train.n, train.n * 200)
  fs.writeFileSync(path.join(dir, 'order.bin'), Buffer.from(ord.idx.buffer)); fs.writeFileSync(path.join(dir, 'flip.bin'), ord.flip)
  // The initial weights both start from.
  const init = await st.createModel({ arch: 'pspnet', backbone: 'resnet18', numClasses: NC, outputStride, aux: true })
  const initFile = path.join(dir, 'init.pt')
  await init.saveStateDict(initFile)
  // The reference output PyTorch's copy must reproduce (eval mode, fp32) before it trains.
  const probe = st.tensor(new Uint8Array(train.x.subarray(0, 3 * H * W)), [1, 3, H, W])
  await init.eval()
  const logits = await init.forward(probe, { precision: 'fp32' })
  fs.writeFileSync(path.join(dir, 'probe-logits.bin'), Buffer.from(logits.dataSync().buffer))
  const parameters = init.info().parameters
  init.dispose()
  log(`PSPNet-ResNet18 (output stride ${outputStride}, aux head), ${(parameters / 1e6).toFixed(2)} M parameters; ${train.n} train / ${val.n} val images; ` +
    (fixedSteps ? `${fixedSteps} steps` : `budget ${budget} s`) + ` per run, batch ${batch}`)

  const results = []
  for (const run of runs) {
    const [lib, precision] = run.split(':')
    log(`run ${run}: load ${os.loadavg()[0].toFixed(1)}`)
    const loadBefore = os.loadavg()[0]
    const res = lib === 'segtorch' ? await runOurs(precision, dir, train, val, ord, initFile)
      : lib === 'recipe' ? await runRecipe(precision, val)
        : lib === 'torchvision' ? runTorchvision(precision, dir, train.n, val.n)
          : runPyTorch(precision, dir, initFile, train.n, val.n)
    const s = score(res.pred, val)
    const effective = (lib === 'segtorch' && precision === 'auto') || lib === 'recipe' ? (b.bf16 ? 'bf16+channels-last' : 'fp32') : precision === 'bf16' ? 'bf16+channels_last' : 'fp32'
    const model = lib === 'torchvision' || lib === 'recipe' ? res.model : 'pspnet-resnet18'
    const optimizer = lib === 'torchvision' ? res.recipe.optimizer : lib === 'recipe' ? res.optimizer : 'sgd'
    const row = { run, model, optimizer, precision: effective, steps: res.steps, trainSeconds: res.trainSeconds, imagesPerSecond: res.imagesPerSecond, finalLoss: mean(res.losses.slice(-10)), ...s, loadBefore, loadAfter: os.loadavg()[0], probeMaxAbsDiff: res.probeMaxAbsDiff }
    if (lib === 'recipe') Object.assign(row, { parameters: res.parameters, options: res.options })
    if (lib === 'torchvision') Object.assign(row, { parameters: res.parameters, recipe: res.recipe, torch: res.torch, torchvision: res.torchvision, python: res.python, threads: res.threads, cpu: res.cpu })
    results.push(row)
    log(`run ${run}: ${res.steps} steps in ${res.trainSeconds.toFixed(0)} s (${res.imagesPerSecond.toFixed(2)} img/s, ${(res.steps / res.trainSeconds).toFixed(3)} steps/s), val mIoU ${(100 * s.mIoU).toFixed(2)}`)
    log(`run ${run}: per-class IoU ${CLASSES.map((c) => `${c} ${Number.isNaN(s.perClassIoU[c]) ? '-' : (100 * s.perClassIoU[c]).toFixed(1)}`).join(', ')}`)
  }

  const pct = (v) => Number.isNaN(v) ? '-' : (100 * v).toFixed(1)
  const lines = [
    `bench/camvid: from scratch, CamVid ${train.n} train / ${val.n} val at ${H}x${W}, ` +
    (fixedSteps ? `${fixedSteps} steps per run` : `${budget} s wall-clock per run`) +
    (runs.some((r) => /^(segtorch|pytorch):/.test(r)) ? `; PSPNet-ResNet18 runs: batch ${batch}, output stride ${outputStride}, SGD lr ${lr0} poly(0.9), momentum 0.9, wd 1e-4, aux 0.4` : '') +
    `; libtorch ${b.libtorch}, ${b.threads} threads, ${os.cpus()[0].model} (${b.bf16 ? 'native bf16' : 'no native bf16'})`,
    '',
    `| run | model | precision | steps | img/s | final loss | val mIoU | pixel acc | ${CLASSES.join(' | ')} |`,
    `|---|---|---|---|---|---|---|---|${CLASSES.map(() => '---').join('|')}|`
  ]
  for (const r of results) {
    lines.push(`| ${r.run} | ${r.model} (${r.optimizer}) | ${r.precision} | ${r.steps} | ${r.imagesPerSecond.toFixed(2)} | ${r.finalLoss.toFixed(3)} | **${pct(r.mIoU)}** | ${pct(r.pixelAccuracy)} | ${CLASSES.map((c) => pct(r.perClassIoU[c])).join(' | ')} |`)
  }
  const py = results.find((r) => r.run === 'pytorch:fp32')
  if (py) {
    for (const r of results.filter((x) => x.run.startsWith('segtorch'))) {
      lines.push('', `${r.run} vs pytorch:fp32: mIoU ${pct(r.mIoU)} vs ${pct(py.mIoU)} (${r.mIoU >= py.mIoU ? '>=' : '<'}), throughput x${(r.imagesPerSecond / py.imagesPerSecond).toFixed(2)}`)
    }
  }
  for (const tv of results.filter((x) => x.run.startsWith('torchvision:'))) {
    lines.push('', `${tv.run}: torchvision ${tv.model}, ${(tv.parameters / 1e6).toFixed(2)} M parameters, from scratch, AdamW lr ${tv.recipe.lr} wd ${tv.recipe.weightDecay} ` +
      `${tv.recipe.schedule}, batch ${tv.recipe.batch}, hflip; torch ${tv.torch}, torchvision ${tv.torchvision}, ${tv.threads} threads`)
    for (const r of results.filter((x) => x.run.startsWith('segtorch') || x.run.startsWith('recipe:'))) {
      lines.push(`${r.run} vs ${tv.run}: mIoU ${pct(r.mIoU)} vs ${pct(tv.mIoU)} (${r.mIoU >= tv.mIoU ? '>=' : '<'}), throughput x${(r.imagesPerSecond / tv.imagesPerSecond).toFixed(2)}`)
    }
  }
  console.log(lines.join('\n'))
  fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
  const file = path.join(__dirname, 'results', fixedSteps ? 'camvid-steps.json' : 'camvid.json')
  fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), size: [H, W], batch, outputStride, budget, fixedSteps, lr: lr0, seed, parameters, backend: b, seconds: (Date.now() - started) / 1000, results }, null, 2))
  log(`wrote ${file} (${((Date.now() - started) / 1000).toFixed(0)} s in all)`)
})().catch((e) => { console.error(e.stack || e.message); process.exit(1) })

function mean (a) { return a.length ? a.reduce((x, y) => x + y, 0) / a.length : NaN }
