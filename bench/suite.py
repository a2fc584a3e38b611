"""One PyTorch (Python) measurement for bench/suite.js, in its own process; prints one JSON line.

usage: /usr/bin/python3 bench/suite.py JSON
JSON: {"model": "fcn/resnet50", "task": "train" | "infer" | "export", "variant": "default" | "best",
       "threads": 2, "warmup": 1, "steps": 3, "runs": 3, "batch": 4, "trainSize": 256, "inferSize": 512,
       "onnx": "/tmp/x.onnx" (export only)}
default: fp32, NCHW, eager. best: channels_last + bf16 autocast (inference also under inference_mode).
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_twins import build  # noqa: E402


def peak_rss_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return 0


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c['threads'])
    torch.manual_seed(0)
    model = build(c['model'])
    params = sum(p.numel() for p in model.parameters())
    best = c.get('variant') == 'best'
    out = {'params': params}

    if c['task'] == 'export':
        model.eval()
        x = torch.randn(1, 3, c['inferSize'], c['inferSize'])
        with torch.no_grad():
            torch.onnx.export(model, x, c['onnx'], opset_version=13, input_names=['input'], output_names=['out'])
        print(json.dumps(out))
        return

    if c['task'] == 'train':
        n, s = c['batch'], c['trainSize']
        x = torch.rand(n, 3, s, s)
        y = torch.randint(0, 21, (n, s, s))
        model.train()
        if best:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad()
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=best):
                logits = model(x)
                aux = getattr(model, 'aux_outputs', [])
            loss = F.cross_entropy(logits.float(), y, ignore_index=255)
            for w, a in aux:
                yy = F.interpolate(y[:, None].float(), size=a.shape[-2:], mode='nearest')[:, 0].long()
                loss = loss + w * F.cross_entropy(a.float(), yy, ignore_index=255)
            loss.backward()
            opt.step()
            return loss.item()

        for _ in range(c['warmup']):
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
        if best:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        times = []
        ctx = torch.inference_mode if best else torch.no_grad
        with ctx():
            for i in range(c['warmup'] + c['runs']):
                t0 = time.perf_counter()
                with torch.autocast('cpu', dtype=torch.bfloat16, enabled=best):
                    y = model(x)
                y.float().argmax(1)
                if i >= c['warmup']:
                    times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out['medianMs'] = times[len(times) // 2]
        out['minMs'] = times[0]
    out['peakRssMiB'] = peak_rss_mib()
    print(json.dumps(out))


if __name__ == '__main__':
    main()
