"""Where the time of one PyTorch twin's training step or inference goes, by kind of operation.

usage: python bench/op_profile.py MODEL train|infer default|best|compiled [--threads N] [--steps N]
       [--batch 4] [--train-size 256] [--infer-size 512] [--json out.json]
       python bench/op_profile.py --trace FILE.json [FILE.json ...] [--json out.json]

The second form sums segtorch's own traces (SEGTORCH_PROFILE=<prefix> writes one Chrome trace per
native job: bench/README.md) the same way, per job (the mean over the files given).

The profile behind bench/README's explanation of each target miss: torch.profiler over a few
steps of bench/torch_twins.py's twin (the same settings as bench/suite.py), after warm-up (and, for
'compiled', after the compilation). Self CPU time of every ATen operator (or inductor kernel) is put
in one of these groups:
  conv         convolutions (oneDNN), their backward and weight reorders
  matmul       linear layers / matrix products
  norm         BatchNorm forward / backward
  cast         dtype conversions (autocast's casts of weights and activations)
  elementwise  activations, additions, multiplications, copies (one pass over memory each)
  resize       bilinear / nearest interpolation and its backward
  pool         pooling and unpooling
  loss         cross-entropy / log-softmax / NLL
  optimizer    the optimizer step (recorded as 'Optimizer.step#SGD.step': its ops counted here)
  fused        inductor's generated kernels (compiled: a kernel fuses several of the above)
  other        the rest
Prints a table (ms per step and share) and the top operators; --json writes both.
The segtorch side runs the same ATen operators (its networks are the twins' in C++), so the eager
'best' profile stands for segtorch's defaults (bf16 autocast + channels-last): compare its groups
with 'compiled' to see what inductor saves.
"""
import argparse
import json
import os
import sys
import time


GROUPS = [
    ('optimizer', ()),  # by the enclosing Optimizer.step record, see below
    ('fused', ('cpp_fused', 'kernel_cpp', 'triton_', 'graph_', 'compiledfunction', 'torchdynamo', 'inductor')),
    ('conv', ('conv', 'mkldnn', 'onednn', 'reorder', 'to_mkldnn')),
    ('resize', ('upsample', 'interpolate', 'grid_sampler')),
    ('matmul', ('addmm', 'matmul', '::mm', 'bmm', '::linear')),
    ('norm', ('batch_norm', 'native_batch_norm', 'layer_norm', 'group_norm', 'batchnormact')),
    ('pool', ('pool', 'unpool')),
    ('loss', ('nll_loss', 'log_softmax', 'cross_entropy', '_softmax')),
    ('cast', ('_to_copy', 'to', '_autocast_to')),
    ('elementwise', ('relu', 'hardtanh', 'hardswish', 'hardsigmoid', 'sigmoid', 'add', 'mul', 'div', 'sub', 'copy_', 'clone',
                     'contiguous', 'cat', 'fill_', 'zero_', 'threshold', 'where', 'neg', 'clamp', 'ones_like', 'zeros_like',
                     'empty', 'sum', 'mean', 'abs', 'pow', 'sqrt', 'exp')),
]


def group_of(name):
    n = name.lower()
    for g, keys in GROUPS:
        if any(k in n for k in keys):
            return g
    return 'other'


def summarise(title, groups, ops, per, out_json, extra):
    total = sum(groups.values())
    print(f'{title}, {per(total):.0f} ms of operator self time profiled')
    for g, us in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f'  {g:<12} {per(us):8.1f} ms  {100 * us / total:5.1f} %')
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:15]
    print('  top operators:')
    for name, us in top:
        print(f'    {per(us):8.1f} ms  {name[:90]}')
    if out_json:
        with open(out_json, 'w') as f:
            json.dump({**extra, 'groupsMs': {g: per(us) for g, us in groups.items()}, 'topMs': {n: per(us) for n, us in top}}, f, indent=1)


def traces(files, out_json):
    """segtorch's Chrome traces (one native job each): self time per operator, grouped."""
    groups, ops = {}, {}
    for file in files:
        with open(file) as f:
            events = [e for e in json.load(f) if e.get('ph') == 'X']
        opt_ranges = [(e['ts'], e['ts'] + e['dur']) for e in events if e['name'] == 'segtorch::optimizer_step']
        by_thread = {}
        for e in events:
            by_thread.setdefault(e.get('tid'), []).append(e)
        for evs in by_thread.values():
            # Nesting by time: an event's self time is its duration less its direct children's.
            evs.sort(key=lambda e: (e['ts'], -e['dur']))
            stack, child = [], {}
            for i, e in enumerate(evs):
                while stack and evs[stack[-1]]['ts'] + evs[stack[-1]]['dur'] <= e['ts']:
                    stack.pop()
                if stack:
                    child[stack[-1]] = child.get(stack[-1], 0.0) + e['dur']
                stack.append(i)
            for i, e in enumerate(evs):
                if e['name'].startswith('segtorch::'):
                    continue
                self_us = max(0.0, e['dur'] - child.get(i, 0.0))
                g = 'optimizer' if any(lo <= e['ts'] <= hi for lo, hi in opt_ranges) else group_of(e['name'])
                groups[g] = groups.get(g, 0.0) + self_us
                ops[e['name']] = ops.get(e['name'], 0.0) + self_us
    per = lambda us: us / 1000 / len(files)  # noqa: E731
    summarise(f'segtorch traces: {len(files)} job(s), per job', groups, ops, per, out_json, {'traces': files})


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--trace':
        rest = sys.argv[2:]
        out_json = None
        if '--json' in rest:
            i = rest.index('--json')
            out_json = rest[i + 1]
            rest = rest[:i] + rest[i + 2:]
        traces(rest, out_json)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument('model')
    ap.add_argument('task', choices=['train', 'infer'])
    ap.add_argument('variant', choices=['default', 'best', 'compiled'])
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    ap.add_argument('--steps', type=int, default=3)
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--train-size', type=int, default=256)
    ap.add_argument('--infer-size', type=int, default=512)
    ap.add_argument('--precision', choices=['auto', 'bf16', 'fp32'], default='auto',
                    help="'best' / 'compiled': bf16 autocast, or fp32 (auto: bf16 where it is the faster precision, as bench/suite.js)")
    ap.add_argument('--json')
    a = ap.parse_args()
    import torch  # the trace form needs no PyTorch
    from torch.profiler import ProfilerActivity, profile
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from suite import bf16_fastest, training_step
    from torch_twins import build
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    fast = a.variant in ('best', 'compiled')
    if a.precision == 'auto':
        a.precision = 'bf16' if bf16_fastest() else 'fp32'
    autocast = fast and a.precision == 'bf16'
    model = build(a.model)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    cl = torch.channels_last if fast else torch.contiguous_format
    if a.task == 'train':
        run = training_step(model, a.variant, a.batch, a.train_size, bf16=autocast)  # bench/suite.py's step
        ctx = torch.enable_grad
    else:
        model.eval()
        x = torch.rand(1, 3, a.infer_size, a.infer_size).contiguous(memory_format=cl)
        if a.variant == 'compiled':
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True
        net = torch.compile(model) if a.variant == 'compiled' else model

        def run():
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
                o = net(x)
            o.float().argmax(1)
        ctx = torch.inference_mode if fast else torch.no_grad
    with ctx():
        t0 = time.perf_counter()
        run()  # warm-up (and compilation)
        first = time.perf_counter() - t0
        run()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            run()
        plain = (time.perf_counter() - t0) / a.steps
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(a.steps):
                run()
    events = prof.events()
    # Operators inside the optimizer step belong to it: collect their time ranges first.
    opt_ranges = [(e.time_range.start, e.time_range.end) for e in events if e.name.startswith('Optimizer.step')]
    groups = {}
    ops = {}
    for e in events:
        if e.name.startswith('Optimizer.') or e.name.startswith('ProfilerStep') or e.name.startswith('##'):
            continue
        self_us = e.self_cpu_time_total
        if self_us <= 0:
            continue
        s = e.time_range.start
        g = 'optimizer' if any(lo <= s <= hi for lo, hi in opt_ranges) else group_of(e.name)
        groups[g] = groups.get(g, 0.0) + self_us
        ops[e.name] = ops.get(e.name, 0.0) + self_us
    per = lambda us: us / 1000 / a.steps  # noqa: E731
    summarise(f'{a.model} {a.task} {a.variant}: torch {torch.__version__}, {a.threads} threads, '
              f'{plain * 1000:.0f} ms per {"step" if a.task == "train" else "image"} unprofiled (first call {first:.1f} s)',
              groups, ops, per, a.json,
              {'model': a.model, 'task': a.task, 'variant': a.variant, 'torch': torch.__version__.split('+')[0],
               'threads': a.threads, 'msUnprofiled': plain * 1000})

if __name__ == '__main__':
    main()
