"""Loads TorchScript files written by segtorch's exportTorchScript with torch.jit.load and runs them.

usage: export_check.py DIR NAME... : for each NAME, loads DIR/NAME.pt, runs it in eval mode on the
float32 input DIR/NAME.in.bin of the shape in DIR/NAME.shape (N C H W), writes the logits to
DIR/NAME.out.bin and prints 'NAME N K H W parameters', then 'meta NAME {arch, mean, std}' from
the archive's segtorch.json.
"""
import json
import os
import sys

import torch

torch.set_num_threads(int(os.environ.get("TS_THREADS", "1")))
folder = sys.argv[1]
print("torch", torch.__version__)
for name in sys.argv[2:]:
    base = os.path.join(folder, name)
    with open(base + ".shape") as f:
        shape = [int(v) for v in f.read().split()]
    x = torch.frombuffer(bytearray(open(base + ".in.bin", "rb").read()), dtype=torch.float32).reshape(shape)
    extra = {"segtorch.json": ""}
    m = torch.jit.load(base + ".pt", map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["segtorch.json"])
    m.eval()
    with torch.no_grad():
        y = m(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32, type(y)
    with open(base + ".out.bin", "wb") as f:
        f.write(y.contiguous().numpy().tobytes())
    print(name, *y.shape, sum(p.numel() for p in m.parameters()))
    print("meta", name, json.dumps({"arch": meta["config"]["arch"], "mean": meta["mean"], "std": meta["std"]}))
