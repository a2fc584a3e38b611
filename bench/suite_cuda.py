"""PyTorch's side of bench/cuda.js on a GPU, in one process (imports are slow); prints one JSON line.

Named suite_cuda.py, not cuda.py: torch 2.15 imports a top-level `cuda` package (NVIDIA's cuda-python), and a
cuda.py beside a script run from bench/ would shadow it.

usage: python bench/suite_cuda.py JSON
JSON: {"models": ["fcn/resnet50", ...], "batch": 8, "trainSize": 512, "inferSize": 1024,
       "warmup": 3, "steps": 10, "runs": 10}

Per model, the same twins as bench/suite.py (bench/torch_twins.py), on cuda:0:
  default  fp32 eager, NCHW: what PyTorch does unasked (cuDNN's TF32 convolutions, its default).
  best     channels_last + fp16 autocast + GradScaler (training), channels_last + fp16 autocast
           under inference_mode (inference), cudnn.benchmark on: the AMP recipe of PyTorch's docs.
Training: SGD lr 0.01 momentum 0.9 on random images and 21-class labels, the loss read back each step
(.item(), a host sync, as segtorch's trainStep returns it). Inference: labels (argmax) copied to the host.
torch.compile is not measured here (minutes of compilation per model and variant).
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_twins import build  # noqa: E402
from suite import seg_loss  # noqa: E402


def train(model, variant, c):
    dev = torch.device('cuda')
    n, s = c['batch'], c['trainSize']
    best = variant == 'best'
    x = torch.rand(n, 3, s, s, device=dev)
    y = torch.randint(0, 21, (n, s, s), device=dev)
    if best:
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler('cuda', enabled=best)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=torch.float16, enabled=best):
            o = model(x)
        loss = seg_loss(o, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.item()
    for _ in range(c['warmup']):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(c['steps']):
        step()
    dt = time.perf_counter() - t0
    return {'imagesPerSecond': n * c['steps'] / dt, 'msPerStep': dt * 1000 / c['steps']}


def infer(model, variant, c):
    s = c['inferSize']
    best = variant == 'best'
    x = torch.rand(1, 3, s, s, device='cuda')
    if best:
        x = x.contiguous(memory_format=torch.channels_last)
    model.eval()
    times = []
    ctx = torch.inference_mode if best else torch.no_grad
    with ctx():
        for i in range(c['warmup'] + c['runs']):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast('cuda', dtype=torch.float16, enabled=best):
                o = model(x)
            o.argmax(1).to(torch.uint8).cpu()
            t = time.perf_counter() - t0
            if i >= c['warmup']:
                times.append(t * 1000)
    times.sort()
    return {'medianMs': times[len(times) // 2], 'minMs': times[0]}


def main():
    c = json.loads(sys.argv[1])
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    out = {'torch': torch.__version__, 'gpu': torch.cuda.get_device_name(0), 'results': []}
    for name in c['models']:
        for variant in ('default', 'best'):
            model = build(name).cuda()
            if variant == 'best':
                model = model.to(memory_format=torch.channels_last)
            r = {'model': name, 'variant': variant}
            try:
                r['train'] = train(model, variant, c)
                r['infer'] = infer(model, variant, c)
            except Exception as e:  # one model's failure is reported, the others still run
                r['error'] = str(e).split('\n')[0][:300]
            out['results'].append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            del model
            torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == '__main__':
    main()
