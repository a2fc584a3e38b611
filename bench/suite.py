"""One PyTorch (Python) measurement for bench/suite.js, in its own process; prints one JSON line.

usage: python bench/suite.py JSON
JSON: {"model": "fcn/resnet50", "task": "train" | "infer" | "export" | "flops",
       "variant": "default" | "best" | "compiled",
       "threads": 2, "warmup": 1, "steps": 2, "runs": 3, "batch": 4, "trainSize": 256, "inferSize": 512,
       "onnx": "/tmp/x.onnx" (export only), "ptPrecision": "bf16" | "fp32" (best / compiled; default bf16)}

Variants (PyTorch on the CPU as its documentation recommends in 2026):
  default   fp32, NCHW, eager; inference under no_grad.
  best      channels_last + bf16 autocast, eager; inference under inference_mode.
  compiled  torch.compile (inductor, default mode) + channels_last + bf16 autocast; inference under
            inference_mode with inductor's freezing (weights folded as constants, oneDNN prepacking:
            the CPU inference recipe). The first call (tracing + code generation + the first step) is
            reported as compileSeconds and is not part of the timed steps. Each compiled child has its
            own empty inductor cache directory (bench/suite.js sets TORCHINDUCTOR_CACHE_DIR), so the
            compile time is a cold one, as a user's first run.
  With "ptPrecision": "fp32" (bench/suite.js's choice on a CPU without native bf16) 'best' and
  'compiled' keep channels_last and drop the bf16 autocast.
compare: (--check-twins) load segtorch's saved weights into the twin (strict: same names and shapes)
  and compare its eval forward with segtorch's on the same input.
flops: forward FLOPs of the twin at 1x3xSxS (inferSize, eval) and of one training step (3x the
  training-mode forward at batch x 3 x trainSize^2, the suite's training settings), counted by
  torch.utils.flop_counter.FlopCounterMode (convolutions and matrix products, 2 FLOPs per
  multiply-add; element-wise ops, norms and pooling are not counted), on the meta device (no compute).
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_twins import build, border_focal_loss  # noqa: E402


def peak_rss_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return 0


def bf16_fastest():
    """Whether bf16 is the faster precision here, as bench/suite.js's --pt-precision auto and segtorch's
    'auto' decide (bench/op_profile.py's --precision auto): AMX, or AVX512-BF16 on a CPU that is not
    Intel's (on Intel without AMX bf16 measured slower than fp32: bench/README "An Intel CPU with
    AVX512-BF16 and no AMX")."""
    try:
        with open('/proc/cpuinfo') as f:
            text = f.read()
    except OSError:
        return False
    if ' amx_bf16' in text:
        return True
    return ' avx512_bf16' in text and 'GenuineIntel' not in text


def split_output(out):
    """A twin returns logits, or in training (logits, [(weight, tensor, kind), ...])."""
    return out if isinstance(out, tuple) else (out, [])


def seg_loss(out, y):
    logits, aux = split_output(out)
    loss = F.cross_entropy(logits.float(), y, ignore_index=255)
    for w, a, kind in aux:
        if kind == 'ce':
            yy = y if a.shape[-2:] == y.shape[-2:] else F.interpolate(y[:, None].float(), size=a.shape[-2:], mode='nearest')[:, 0].long()
            loss = loss + w * F.cross_entropy(a.float(), yy, ignore_index=255)
        elif kind == 'border':
            loss = loss + w * border_focal_loss(a, y)
    return loss


def training_step(model, variant, n, s, bf16=True, clip=0):
    """The suite's training step of `model` (already channels-last for 'best' / 'compiled'): SGD lr 0.01
    momentum 0.9 on random n x 3 x s x s images and labels; bf16 autocast for 'best' / 'compiled' (bf16=True),
    torch.compile for 'compiled'; with clip > 0 the gradients' global norm clipped to it before the update
    (segtorch's default for GCN, outside the compiled module as a user writes it). Returns a function that
    runs one step and returns its loss."""
    fast = variant in ('best', 'compiled')
    autocast = fast and bf16
    x = torch.rand(n, 3, s, s)
    y = torch.randint(0, 21, (n, s, s))
    model.train()
    if fast:
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = torch.compile(model) if variant == 'compiled' else model

    def step():
        opt.zero_grad()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            o = net(x)
        loss = seg_loss(o, y)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss.item()
    return step


def count_flops(c):
    from torch.utils.flop_counter import FlopCounterMode

    def run(device):
        with torch.device(device):
            model = build(c['model'])
        out = {}
        model.eval()
        x = torch.rand(1, 3, c['inferSize'], c['inferSize'], device=device)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(x)
        out['inferFlops'] = fc.get_total_flops()
        model.train()
        n, s = c['batch'], c['trainSize']
        x = torch.rand(n, 3, s, s, device=device)
        y = torch.randint(0, 21, (n, s, s), device=device)
        with FlopCounterMode(display=False) as fc:
            seg_loss(model(x), y)
        # A training step = 3x its forward (backward: gradients of the inputs and of the weights, each
        # as much as the forward). Counting the backward itself is wrong in torch 2.15: FlopCounterMode
        # counts a grouped (depthwise) convolution's backward as a dense one (lraspp: 38x its forward).
        out['trainForwardFlops'] = fc.get_total_flops()
        out['trainFlops'] = 3 * out['trainForwardFlops']
        out['flopsOn'] = device
        return out
    try:
        return run('meta')
    except Exception as e:  # an op without a meta kernel (max_unpool2d): count on real tensors
        r = run('cpu')
        r['metaError'] = str(e).split('\n')[0][:200]
        return r


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c['threads'])
    torch.manual_seed(0)
    out = {'torch': torch.__version__.split('+')[0]}
    if c['task'] == 'flops':
        out.update(count_flops(c))
        print(json.dumps(out))
        return
    if c['task'] == 'compare':  # --check-twins: segtorch's weights in the twin, the same input
        import numpy as np
        model = build(c['model']).eval()
        model.load_state_dict(torch.load(c['prefix'] + '.pt'), strict=True)
        s = c['size']
        x = torch.from_numpy(np.fromfile(c['prefix'] + '.in', dtype=np.float32).reshape(1, 3, s, s))
        ref = torch.from_numpy(np.fromfile(c['prefix'] + '.out', dtype=np.float32)).reshape(1, -1, s, s)
        with torch.no_grad():
            y = model(x)
        out.update(params=sum(p.numel() for p in model.parameters()), maxAbsDiff=(y - ref).abs().max().item(),
                   maxAbsOut=ref.abs().max().item(), agreement=(y.argmax(1) == ref.argmax(1)).float().mean().item())
        print(json.dumps(out))
        return
    model = build(c['model'])
    out['params'] = sum(p.numel() for p in model.parameters())
    variant = c.get('variant', 'default')
    fast = variant in ('best', 'compiled')
    autocast = fast and c.get('ptPrecision', 'bf16') == 'bf16'
    out['precision'] = 'bf16' if autocast else 'fp32'
    if variant == 'compiled' and not hasattr(torch, 'compile'):
        raise SystemExit(f'torch {torch.__version__} has no torch.compile')

    if c['task'] == 'export':
        model.eval()
        x = torch.randn(1, 3, c['inferSize'], c['inferSize'])
        kw = {}
        import inspect
        if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
            kw['dynamo'] = False  # the TorchScript exporter: no onnxscript needed
        with torch.no_grad():
            torch.onnx.export(model, x, c['onnx'], opset_version=13, input_names=['input'], output_names=['out'], **kw)
        print(json.dumps(out))
        return

    if fast:
        model = model.to(memory_format=torch.channels_last)

    if c['task'] == 'train':
        n = c['batch']
        step = training_step(model, variant, n, c['trainSize'], bf16=autocast, clip=c.get('clipGradNorm', 0))

        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        if variant == 'compiled':
            out['compileSeconds'] = first
        for _ in range(c['warmup'] - 1):
            step()
        t0 = time.perf_counter()
        for _ in range(c['steps']):
            step()
        dt = time.perf_counter() - t0
        out['imagesPerSecond'] = n * c['steps'] / dt
        out['msPerStep'] = dt * 1000 / c['steps']
    else:
        s = c['inferSize']
        x = torch.rand(1, 3, s, s)
        model.eval()
        if fast:
            x = x.contiguous(memory_format=torch.channels_last)
        if variant == 'compiled':
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True
        net = torch.compile(model) if variant == 'compiled' else model
        times = []
        ctx = torch.inference_mode if fast else torch.no_grad
        with ctx():
            for i in range(max(c['warmup'], 1 if variant == 'compiled' else 0) + c['runs']):
                t0 = time.perf_counter()
                with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
                    o = net(x)
                o.float().argmax(1)
                t = time.perf_counter() - t0
                if i == 0 and variant == 'compiled':
                    out['compileSeconds'] = t
                elif i >= max(c['warmup'], 1 if variant == 'compiled' else 0):
                    times.append(t * 1000)
        times.sort()
        out['medianMs'] = times[len(times) // 2]
        out['minMs'] = times[0]
    out['peakRssMiB'] = peak_rss_mib()
    print(json.dumps(out))


if __name__ == '__main__':
    main()
