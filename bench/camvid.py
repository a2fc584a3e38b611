#!/usr/bin/python3
"""PyTorch side of bench/camvid.js: the same PSPNet-ResNet18, the same data, order, recipe and budget.

Builds PSPNet on a dilated ResNet-18 with segtorch's module names, loads segtorch's initial weights
(strict), checks its eval forward against segtorch's on a probe image, trains for the wall-clock
budget (or a fixed number of steps), predicts the val images and writes them for bench/camvid.js
to score. Prints one JSON line on stdout. Run by bench/camvid.js; not meant to be run alone.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def dilate_basic_layer(layer, previous, dilation):
    """Turn a torchvision BasicBlock layer's stride into dilation, as segtorch's ResNet does."""
    first = layer[0]
    first.conv1.stride = (1, 1)
    first.conv1.dilation = (previous, previous)
    first.conv1.padding = (previous, previous)
    first.conv2.dilation = (dilation, dilation)
    first.conv2.padding = (dilation, dilation)
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)
    for block in list(layer)[1:]:
        for conv in (block.conv1, block.conv2):
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation, dilation)


class Backbone(nn.Module):
    def __init__(self, output_stride):
        super().__init__()
        r = torchvision.models.resnet18()
        self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4 = r.conv1, r.bn1, r.layer1, r.layer2, r.layer3, r.layer4
        if output_stride == 8:
            dilate_basic_layer(self.layer3, 1, 2)
            dilate_basic_layer(self.layer4, 2, 4)
        elif output_stride == 16:
            dilate_basic_layer(self.layer4, 1, 2)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return c3, self.layer4(c3)


class PPM(nn.Module):
    def __init__(self, cin, c, bins=(1, 2, 3, 6)):
        super().__init__()
        self.features = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
                                       for b in bins])

    def forward(self, x):
        return torch.cat([x] + [F.interpolate(f(x), size=x.shape[2:], mode='bilinear', align_corners=False) for f in self.features], 1)


def head(cin, mid, classes):
    return nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(), nn.Dropout2d(0.1), nn.Conv2d(mid, classes, 1))


class PSPNet(nn.Module):
    def __init__(self, classes, output_stride):
        super().__init__()
        self.stride = output_stride
        self.backbone = Backbone(output_stride)
        self.ppm = PPM(512, 128)
        self.cls = head(1024, 512, classes)
        self.aux = head(256, 256, classes)

    def forward(self, x):
        # As segtorch (and torchvision): any input size, no padding; logits upsampled to the input size.
        c3, c4 = self.backbone(x)
        out = F.interpolate(self.cls(self.ppm(c4)), size=x.shape[2:], mode='bilinear', align_corners=False)
        if self.training:
            return out, F.interpolate(self.aux(c3), size=x.shape[2:], mode='bilinear', align_corners=False)
        return out


def main():
    p = argparse.ArgumentParser()
    for a in ('dir', 'init', 'precision', 'size'):
        p.add_argument('--' + a, required=True)
    for a in ('budget', 'lr'):
        p.add_argument('--' + a, type=float, required=True)
    for a in ('steps', 'batch', 'os', 'train-n', 'val-n', 'classes', 'threads'):
        p.add_argument('--' + a, type=int, required=True)
    o = p.parse_args()
    torch.set_num_threads(o.threads)
    torch.manual_seed(0)
    h, w = map(int, o.size.split('x'))
    d = o.dir
    train_x = np.fromfile(os.path.join(d, 'train-x.bin'), np.uint8).reshape(o.train_n, 3, h, w)
    train_y = np.fromfile(os.path.join(d, 'train-y.bin'), np.uint8).reshape(o.train_n, h, w)
    val_x = np.fromfile(os.path.join(d, 'val-x.bin'), np.uint8).reshape(o.val_n, 3, h, w)
    order = np.fromfile(os.path.join(d, 'order.bin'), np.int32)
    flip = np.fromfile(os.path.join(d, 'flip.bin'), np.uint8)

    model = PSPNet(o.classes, o.os)
    state = torch.load(o.init)
    model.load_state_dict(state, strict=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def prep(xu8):
        x = (torch.from_numpy(xu8).float().div_(255) - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if o.precision == 'bf16' else x

    # Same network as segtorch's: the eval forward of the shared initial weights must agree.
    model.eval()
    with torch.no_grad():
        ref = np.fromfile(os.path.join(d, 'probe-logits.bin'), np.float32).reshape(1, o.classes, h, w)
        got = model(prep(train_x[:1].copy())).numpy()
    probe_diff = float(np.abs(got - ref).max())
    if probe_diff > 1e-3 * max(1.0, float(np.abs(ref).max())):
        raise SystemExit(f'camvid.py: PyTorch copy differs from segtorch on the probe image: max |diff| {probe_diff}')

    if o.precision == 'bf16':
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=0.9, weight_decay=1e-4)
    model.train()
    losses = []
    t0 = time.perf_counter()
    step = 0
    while (step < o.steps) if o.steps else (time.perf_counter() - t0 < o.budget):
        sl = slice(step * o.batch, (step + 1) * o.batch)
        idx, fl = order[sl], flip[sl].astype(bool)
        xb, yb = train_x[idx], train_y[idx]
        xb[fl] = xb[fl][..., ::-1]
        yb[fl] = yb[fl][..., ::-1]
        frac = step / o.steps if o.steps else (time.perf_counter() - t0) / o.budget
        lr = o.lr * math.pow(max(0.0, 1 - frac), 0.9)
        for g in opt.param_groups:
            g['lr'] = lr
        x = prep(xb)
        y = torch.from_numpy(yb.astype(np.int64))
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=o.precision == 'bf16'):
            out, aux = model(x)
            loss = F.cross_entropy(out, y, ignore_index=255) + 0.4 * F.cross_entropy(aux, y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
        step += 1
    train_seconds = time.perf_counter() - t0

    model.eval()
    pred = np.empty((o.val_n, h, w), np.uint8)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=o.precision == 'bf16'):
        for n in range(o.val_n):
            pred[n] = model(prep(val_x[n:n + 1].copy())).argmax(1)[0].numpy().astype(np.uint8)
    pred.tofile(os.path.join(d, f'pred-{o.precision}.bin'))
    print(json.dumps({'steps': step, 'trainSeconds': train_seconds, 'imagesPerSecond': step * o.batch / train_seconds,
                      'losses': losses, 'probeMaxAbsDiff': probe_diff}))


if __name__ == '__main__':
    main()
