"""Upper bounds of two training levers of issue 16, on one twin's parameters (PyTorch, this CPU).

usage: python bench/optimizer_levers.py MODEL [--threads N] [--reps 20]

- foreach / fused optimizer: SGD (momentum 0.9) and AdamW step time over the twin's parameters with
  random gradients, for-loop (what libtorch's C++ optimizers do: a few ATen ops per parameter),
  foreach=True (multi-tensor ops) and fused=True (one kernel per parameter, torch >= 2.4 on the
  CPU). The saving a foreach / fused update could bring segtorch is at most the difference.
- bf16 weight copies: the time to cast every weight to bf16 (what autocast does once per forward,
  cached within it) and every bf16 weight gradient back to fp32: the most that keeping bf16 copies
  between steps could save (the copies must still be refreshed after each update).
Prints ms per step for each; compare with the training step's time (bench/suite, op_profile).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_twins import build  # noqa: E402


def timed(fn, reps):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) * 1000 / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('model')
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    ap.add_argument('--reps', type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    params = [p for p in build(a.model).parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    n = sum(p.numel() for p in params)
    print(f'{a.model}: {len(params)} parameter tensors, {n / 1e6:.1f} M values; torch {torch.__version__}, {a.threads} threads')
    for name, make in (('SGD', lambda **kw: torch.optim.SGD(params, lr=1e-3, momentum=0.9, **kw)),
                       ('AdamW', lambda **kw: torch.optim.AdamW(params, lr=1e-6, **kw))):
        row = []
        for mode in ('for-loop', 'foreach', 'fused'):
            kw = {'foreach': False} if mode == 'for-loop' else {'foreach': True} if mode == 'foreach' else {'fused': True}
            try:
                opt = make(**kw)
                row.append(f'{mode} {timed(opt.step, a.reps):.1f} ms')
            except (RuntimeError, TypeError, ValueError) as e:
                row.append(f'{mode} n/a ({str(e).splitlines()[0][:60]})')
        print(f'  {name} step: ' + ', '.join(row))
    weights = [p for p in params if p.dim() > 1]
    half = [w.to(torch.bfloat16) for w in weights]
    cast = timed(lambda: [w.to(torch.bfloat16) for w in weights], a.reps)
    back = timed(lambda: [h.to(torch.float32) for h in half], a.reps)
    print(f'  weight casts: fp32 -> bf16 {cast:.1f} ms, bf16 gradients -> fp32 {back:.1f} ms per step '
          f'({sum(w.numel() for w in weights) / 1e6:.1f} M weights)')


if __name__ == '__main__':
    main()
