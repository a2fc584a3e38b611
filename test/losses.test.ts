import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { confusionMatrix, depthLoss, loss, metrics, tensor } from '../lib'
import { maxRelDiff, profiledTraining, ProfiledRun, rejects, ROOT, savedModels, tmpdir } from './helpers'
import { PYTHON, torchvisionMissing } from './twin'

function close (a: number, b: number, tol = 1e-5): void {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`)
}

describe('losses match PyTorch and the papers\' formulas', function () {
  let ref: Record<string, number>
  let logits: ReturnType<typeof tensor>
  let labels: ReturnType<typeof tensor>
  let pred: ReturnType<typeof tensor>
  let target: ReturnType<typeof tensor>
  const W = [0.5, 1.0, 2.0, 1.5]

  before(function () {
    const why = torchvisionMissing()
    if (why) { console.log(`      skipped: ${why}`); this.skip() }
    const dir = tmpdir()
    const r = spawnSync(PYTHON, [path.join(ROOT, 'test', 'python', 'losses_ref.py'), dir], { encoding: 'utf8' })
    assert.strictEqual(r.status, 0, r.stderr)
    ref = JSON.parse(r.stdout)
    const f32 = (f: string): Float32Array => { const b = fs.readFileSync(path.join(dir, f)); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)) }
    const b = fs.readFileSync(path.join(dir, 'labels.bin'))
    logits = tensor(f32('logits.bin'), [2, 4, 6, 7])
    labels = tensor(new BigInt64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)), [2, 6, 7])
    pred = tensor(f32('pred.bin'), [2, 1, 6, 7])
    target = tensor(f32('target.bin'), [2, 1, 6, 7])
  })

  it('cross-entropy (ignoreIndex, class weights, label smoothing) equals F.cross_entropy', async () => {
    close(await loss('ce', logits, labels), ref.ce)
    close(await loss('ce', logits, labels, { classWeights: W }), ref.ce_weighted)
    close(await loss('ce', logits, labels, { labelSmoothing: 0.1 }), ref.ce_smooth)
    close(await loss('ce', logits, labels, { labelSmoothing: 0.1, classWeights: W }), ref.ce_smooth_weighted)
  })

  it('focal loss (gamma 2), with and without class weights', async () => {
    close(await loss('focal', logits, labels), ref.focal)
    close(await loss('focal', logits, labels, { classWeights: W }), ref.focal_weighted)
  })

  it('multi-class Dice', async () => {
    close(await loss('dice', logits, labels), ref.dice)
  })

  it('OHEM cross-entropy: threshold and minimum kept pixels', async () => {
    close(await loss('ohem', logits, labels, { ohemThreshold: 0.7, ohemMinKept: 10 }), ref['ohem_0.7_10'])
    close(await loss('ohem', logits, labels, { ohemThreshold: 0.2, ohemMinKept: 40 }), ref['ohem_0.2_40'])
    close(await loss('ohem', logits, labels, { ohemThreshold: 0.05, ohemMinKept: 0 }), ref['ohem_0.05_0'])
  })

  it('Lovasz-softmax', async () => {
    close(await loss('lovasz', logits, labels), ref.lovasz)
  })

  it('depth losses L1 and berHu on valid pixels', async () => {
    close(await depthLoss(pred, target, 'l1'), ref.l1)
    close(await depthLoss(pred, target, 'berhu'), ref.berhu)
  })
})

describe('losses: edge cases and bad options', () => {
  it('every loss is 0 or finite when all pixels are ignored', async () => {
    const logits = tensor(new Float32Array(2 * 3 * 4).fill(0.3), [1, 2, 3, 4])
    const labels = tensor(new Uint8Array(12).fill(255), [1, 3, 4])
    for (const name of ['ce', 'ohem', 'focal', 'lovasz'] as const) assert.strictEqual(await loss(name, logits, labels), 0, name)
    assert.ok(Number.isFinite(await loss('dice', logits, labels)))
  })

  it('refuses bad options and shapes', async () => {
    const logits = tensor(new Float32Array(24), [1, 2, 3, 4])
    const labels = tensor(new Uint8Array(12), [1, 3, 4])
    await rejects(loss('xent' as never, logits, labels), RangeError, /'ce', 'ohem', 'dice', 'focal', 'lovasz' for loss/)
    await rejects(loss('ce', logits, labels, { classWeights: [1] }), RangeError, /2 entries/)
    await rejects(loss('ce', logits, labels, { labelSmoothing: 1.5 }), RangeError, /labelSmoothing/)
    await rejects(loss('ce', logits, labels, { smoothing: 0.1 } as never), TypeError, /Unknown option 'smoothing'/)
    await rejects(loss('ce', logits, tensor(new Uint8Array(12), [1, 4, 3])), RangeError, /labels of shape \[1, 3, 4\]/)
  })
})

// Training's cross-entropy on the CPU is one fused node (FusedCrossEntropy in native/train/losses.cc: one
// pass over the logits forward and one backward, reading bf16 logits directly and writing the gradient in
// their layout); F::cross_entropy (SEGTORCH_FUSED_CE=0) is the reference. test/native/cross_entropy_check.cc
// checks the node's loss and gradient against float64 (scripts/sanitize.sh); here whole networks train alike.
describe('the fused cross-entropy in training', function () {
  this.timeout(300000)
  let files: Record<string, string> = {}
  // FCN's logits are resized NCHW at the end; GCN's come channels-last from its last refinement block.
  before(async () => {
    files = await savedModels({
      fcn: { arch: 'fcn', backbone: 'resnet18', numClasses: 2, outputStride: 8 },
      gcn: { arch: 'gcn', backbone: 'resnet18', numClasses: 2, kernelSize: 5 }
    })
  })
  const run = (name: string, fused: boolean, fit: object): ProfiledRun =>
    profiledTraining(files[name], { channelsLast: true, size: 64, env: { SEGTORCH_FUSED_CE: fused ? '1' : '0' }, fit: { optimizer: { type: 'sgd', lr: 0.01, momentum: 0 }, ...fit } })
  // [model, what, fit options, first loss's tolerance, the later ones'] (relative)
  const cases: Array<[string, string, object, number, number]> = [
    ['fcn', 'fp32', { precision: 'fp32' }, 1e-5, 1e-3],
    ['gcn', 'fp32', { precision: 'fp32' }, 1e-5, 1e-3],
    ['fcn', 'fp32, class weights, label smoothing, ignored pixels', { precision: 'fp32', ignoreIndex: 1, lossOptions: { classWeights: [0.4, 1.6], labelSmoothing: 0.1 } }, 1e-5, 1e-3],
    // bf16 logits: the fused node reads them directly (the reference casts them to float32 first: the
    // same values); the networks' bf16 activations make the steps agree to bf16's precision.
    ['gcn', 'bf16', { precision: 'bf16' }, 5e-3, 5e-2]
  ]
  for (const [name, what, fit, first, later] of cases) {
    it(`${name} (${what}): the fused node runs and trains as F::cross_entropy does (3 SGD steps)`, () => {
      const fused = run(name, true, fit)
      const plain = run(name, false, fit)
      assert.match(fused.trace, /FusedCrossEntropy/)
      assert.doesNotMatch(fused.trace, /log_softmax/, 'the loss fell back to F::cross_entropy')
      assert.match(plain.trace, /log_softmax/)
      assert.doesNotMatch(plain.trace, /FusedCrossEntropy/)
      assert.ok(fused.losses.every(Number.isFinite), `losses ${fused.losses}`)
      // The first loss is the same forward. The later ones follow gradients that differ by float rounding,
      // which these networks from scratch amplify (each path is deterministic; GCN's third loss moved by
      // 0.6-3.5e-4 relative between the two, its second by nothing).
      assert.ok(Math.abs(fused.losses[0] - plain.losses[0]) <= first * Math.abs(plain.losses[0]), `first loss ${fused.losses[0]} against ${plain.losses[0]}`)
      assert.ok(maxRelDiff(fused.losses, plain.losses) < later, `losses ${fused.losses} against ${plain.losses}`)
      assert.notStrictEqual(fused.losses[0], fused.losses[2], 'the steps trained')
    })
  }

  it('a label out of range through loss() is a RangeError naming it', async () => {
    const logits = tensor(new Float32Array(24), [1, 2, 3, 4])
    await rejects(loss('ce', logits, tensor(new Uint8Array(12).fill(1).map((v, i) => i === 5 ? 7 : v), [1, 3, 4])), RangeError, /7/)
  })
})

describe('metrics', () => {
  // 3 classes, ignore 255. Labels / predictions chosen so the confusion matrix is easy by hand.
  const labels = tensor(new Uint8Array([0, 0, 0, 1, 1, 2, 255, 255, 1, 0]), [1, 2, 5])
  const preds = tensor(new Int32Array([0, 0, 1, 1, 2, 2, 0, 2, 1, 0]), [1, 2, 5])

  it('accumulates the confusion matrix natively, ignoreIndex never counts', async () => {
    const cm = await confusionMatrix(preds, labels, 3, 255)
    // rows = label, cols = prediction
    assert.deepStrictEqual(Array.from(cm.dataSync(), Number), [3, 1, 0, /**/ 0, 2, 1, /**/ 0, 0, 1])
  })

  it('derives mIoU, accuracies, fwIoU and Dice as computed by hand', async () => {
    const m = metrics(await confusionMatrix(preds, labels, 3, 255))
    // IoU: c0 3/(3+0+1)=0.75, c1 2/(2+1+1)=0.5, c2 1/(1+1+0)=0.5
    close(m.perClassIoU[0], 0.75); close(m.perClassIoU[1], 0.5); close(m.perClassIoU[2], 0.5)
    close(m.mIoU, (0.75 + 0.5 + 0.5) / 3)
    close(m.pixelAccuracy, 6 / 8)
    close(m.meanAccuracy, (3 / 4 + 2 / 3 + 1 / 1) / 3)
    close(m.fwIoU, (4 / 8) * 0.75 + (3 / 8) * 0.5 + (1 / 8) * 0.5)
    close(m.perClassDice[0], 6 / 7); close(m.meanDice, (6 / 7 + 4 / 6 + 2 / 3) / 3)
  })

  it('excludes classes absent from both labels and predictions from the means', async () => {
    const m = metrics(await confusionMatrix(preds, labels, 5, 255))
    assert.ok(Number.isNaN(m.perClassIoU[3]) && Number.isNaN(m.perClassIoU[4]))
    close(m.mIoU, (0.75 + 0.5 + 0.5) / 3)
  })
})
