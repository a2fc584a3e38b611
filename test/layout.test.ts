import * as assert from 'assert'
import * as path from 'path'
import { createModel } from '../lib'
import { profiledTraining, ProfiledRun, tmpdir } from './helpers'

// Channels-last training stays channels-last through image pooling: a 1 x 1 pooled map (PSPNet's bin 1,
// ASPP's pooling branch) is broadcast in the features' layout (native/blocks/resize.h, ResizeLike), so the
// concatenation after it is channels-last and the convolution after that copies nothing, forward or
// backward; the outputs are resized NCHW for the loss (ResizeOutput), whose log_softmax then copies
// nothing either. Measured by the profile of whole training steps, and the same first loss as NCHW.
// What stays (`aten` below): a dilated convolution whose taps beyond the map are cut in training
// (Conv2dImpl::TrainingWithoutDeadTaps: DeepLab v3's ASPP at rates 12, 24 and 36 on an 8 x 8 map keeps
// only the centre tap) gets a kernel slice, which ATen copies to a contiguous kernel (256 x 512 values for ResNet-18,
// some 40 us); one copy per step fewer than before the broadcast, which was the concatenation's.
function copiesUnder (r: ProfiledRun, op: RegExp): number {
  return r.events.filter((e) => e.name === 'aten::copy_' && e.parents.some((p) => op.test(p))).length
}

describe('layouts in training', function () {
  this.timeout(300000)
  const cases = [
    ['pspnet', { arch: 'pspnet', backbone: 'resnet18', numClasses: 2, outputStride: 8, aux: true }, 0],
    ['deeplabv3', { arch: 'deeplabv3', backbone: 'resnet18', numClasses: 2, outputStride: 8 }, 3],
    ['upernet', { arch: 'upernet', backbone: 'resnet18', numClasses: 2 }, 0]
  ] as const
  const files: Record<string, string> = {}
  before(async () => {
    const dir = tmpdir()
    for (const [name, options] of cases) {
      const m = await createModel(options)
      files[name] = path.join(dir, `${name}.segtorch`)
      await m.save(files[name])
      m.dispose()
    }
  })

  for (const [name, , aten] of cases) {
    it(`${name}: no layout copies in the forward convolutions or the loss, the first loss as in NCHW`, () => {
      // Without Winograd (channels-last training's 'auto' with AVX-512 and libtorch 2.x): the same arithmetic in both layouts.
      const cl = profiledTraining(files[name], { channelsLast: true, steps: 2, size: 64, fit: { winograd: false } })
      const nchw = profiledTraining(files[name], { channelsLast: false, steps: 2, size: 64, fit: { winograd: false } })
      assert.ok(cl.events.some((e) => e.name === 'aten::_convolution'), 'the profile has the convolutions')
      assert.strictEqual(copiesUnder(cl, /^aten::_convolution$/), 2 * aten, 'a forward convolution converted its input\'s layout')
      assert.strictEqual(copiesUnder(cl, /^aten::_log_softmax$/), 0, 'the loss converted the logits\' layout')
      // Dropout's mask is drawn in memory order (segtorch's one-pass dropout, blocks/dropout.h, as libtorch 2.x's
      // own), so the two layouts drop different pixels of DeepLab v3's ASPP (dropout 0.5).
      if (name !== 'deeplabv3') {
        assert.ok(Math.abs(cl.losses[0] - nchw.losses[0]) < 1e-5 * Math.abs(nchw.losses[0]), `first loss ${cl.losses[0]} against ${nchw.losses[0]}`)
      }
    })
  }
})
