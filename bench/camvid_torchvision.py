#!/usr/bin/env python3
"""PyTorch 2.x reference of bench/camvid.js: torchvision's DeepLabV3-MobileNetV3-Large from scratch.

"What a PyTorch user runs": PyTorch 2.x from PyPI (scripts/pytorch-venv.sh) training
torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
num_classes=11) (aux_loss left at its default, None: no auxiliary head) in fp32, NCHW, eager mode, with
  - AdamW, lr 2e-3, weight decay 1e-4, poly(0.9) decay over the wall-clock budget
    (lr = lr0 * (1 - elapsed / budget)^0.9; over the steps with --steps N),
  - batch 8, random horizontal flips only: the samples and flips of bench/camvid.js's one seeded
    list (order.bin, flip.bin), consumed in order as every other run consumes them,
  - cross-entropy on the 'out' logits with void ignored (ignore_index 255),
  - inputs scaled to [0, 1] and normalised with the ImageNet mean/std, as torchvision's models expect.
Then model.eval(), argmax of 'out' for every val image at full size, written to <dir>/pred-<tag>.bin
(uint8, N*H*W) for bench/camvid.js to score with its confusion-matrix code. Prints one JSON line on
stdout. Run by bench/camvid.js (run kind torchvision:mbv3), which decodes CamVid into --dir:
train-x.bin (uint8 N*3*H*W), train-y.bin (uint8 N*H*W, void = 255), val-x.bin, order.bin (int32
sample indices), flip.bin (uint8 flip flags). Progress goes to stderr every 10 steps (every step
with CAMVID_TV_VERBOSE=1).
"""
import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dir', required=True, help="bench/camvid.js's temporary folder")
    p.add_argument('--size', default='180x240', help='HxW of the decoded images')
    p.add_argument('--train-n', type=int, required=True)
    p.add_argument('--val-n', type=int, required=True)
    p.add_argument('--classes', type=int, default=11)
    p.add_argument('--budget', type=float, default=1500, help='wall-clock training seconds (ignored with --steps)')
    p.add_argument('--steps', type=int, default=0, help='train exactly this many steps instead of for --budget')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--weight-decay', type=float, default=1e-4)
    p.add_argument('--threads', type=int, default=os.cpu_count())
    p.add_argument('--seed', type=int, default=0, help='torch.manual_seed for the initial weights')
    p.add_argument('--tag', default='torchvision-mbv3', help='predictions go to <dir>/pred-<tag>.bin')
    o = p.parse_args()
    torch.set_num_threads(o.threads)
    torch.manual_seed(o.seed)
    h, w = map(int, o.size.split('x'))
    d = o.dir
    train_x = np.fromfile(os.path.join(d, 'train-x.bin'), np.uint8).reshape(o.train_n, 3, h, w)
    train_y = np.fromfile(os.path.join(d, 'train-y.bin'), np.uint8).reshape(o.train_n, h, w)
    val_x = np.fromfile(os.path.join(d, 'val-x.bin'), np.uint8).reshape(o.val_n, 3, h, w)
    order = np.fromfile(os.path.join(d, 'order.bin'), np.int32)
    flip = np.fromfile(os.path.join(d, 'flip.bin'), np.uint8)

    model = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=o.classes)
    assert model.aux_classifier is None
    parameters = sum(t.numel() for t in model.parameters())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def prep(xu8):
        return (torch.from_numpy(np.ascontiguousarray(xu8)).float().div_(255) - mean) / std

    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    model.train()
    losses = []
    t0 = time.perf_counter()
    step = 0
    while (step < o.steps) if o.steps else (time.perf_counter() - t0 < o.budget):
        if (step + 1) * o.batch > len(order):
            raise SystemExit(f'camvid_torchvision.py: sample order exhausted after {step} steps: raise its length in bench/camvid.js')
        sl = slice(step * o.batch, (step + 1) * o.batch)
        idx, fl = order[sl], flip[sl].astype(bool)
        xb, yb = train_x[idx], train_y[idx]  # fancy indexing: copies
        xb[fl] = xb[fl][..., ::-1]
        yb[fl] = yb[fl][..., ::-1]
        frac = step / o.steps if o.steps else (time.perf_counter() - t0) / o.budget
        lr = o.lr * math.pow(max(0.0, 1 - frac), 0.9)
        for g in opt.param_groups:
            g['lr'] = lr
        x = prep(xb)
        y = torch.from_numpy(yb.astype(np.int64))
        out = model(x)['out']
        loss = F.cross_entropy(out, y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 10 == 0 or os.environ.get("CAMVID_TV_VERBOSE"):
            print(f'[camvid_torchvision] step {step} loss {losses[-1]:.3f} lr {lr:.5f} {time.perf_counter() - t0:.0f} s', file=sys.stderr, flush=True)
    train_seconds = time.perf_counter() - t0

    model.eval()
    pred = np.empty((o.val_n, h, w), np.uint8)
    t1 = time.perf_counter()
    with torch.no_grad():
        for n in range(0, o.val_n, o.batch):
            pred[n:n + o.batch] = model(prep(val_x[n:n + o.batch]))['out'].argmax(1).numpy().astype(np.uint8)
    pred.tofile(os.path.join(d, f'pred-{o.tag}.bin'))
    print(json.dumps({'steps': step, 'trainSeconds': train_seconds, 'imagesPerSecond': step * o.batch / train_seconds,
                      'stepsPerSecond': step / train_seconds, 'evalSeconds': time.perf_counter() - t1, 'losses': losses,
                      'model': 'deeplabv3_mobilenet_v3_large', 'parameters': parameters,
                      'recipe': {'optimizer': 'adamw', 'lr': o.lr, 'weightDecay': o.weight_decay, 'schedule': 'poly(0.9), time-based' if not o.steps else 'poly(0.9), step-based',
                                 'batch': o.batch, 'augmentation': 'hflip', 'ignoreIndex': 255},
                      'torch': torch.__version__, 'torchvision': torchvision.__version__, 'numpy': np.__version__,
                      'python': platform.python_version(), 'threads': torch.get_num_threads(), 'cpu': cpu_model()}))


if __name__ == '__main__':
    main()
