"""PyTorch side of bench/overhead.js: the reference training step.

FCN-ResNet18 as torchvision builds it (IntermediateLayerGetter over resnet18 up to layer4, FCNHead(512, K),
bilinear upsampling to the input size), batch 4 of 3x256x256 float32 images, SGD lr 0.01 momentum 0.9,
cross-entropy with ignore_index 255: the same network and step as segtorch's trainStep.

Driven by bench/overhead.js over stdin/stdout (one command a line, one JSON line back) so that its runs
interleave with the Node and C++ ones. Commands:
  info       parameter count and parameter names/shapes
  train N    N training steps; per-step wall and CPU (all threads) times in milliseconds, losses
  quit
Run it with Debian's /usr/bin/python3 (python3-torch, python3-torchvision: the same libtorch 1.13 as the addon).
Usage: python3 bench/overhead.py [--threads N] [--classes K] [--batch N] [--size S]
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.fcn import FCN, FCNHead


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--classes", type=int, default=21)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    backbone = IntermediateLayerGetter(torchvision.models.resnet18(), return_layers={"layer4": "out"})
    model = FCN(backbone, FCNHead(512, args.classes), aux_classifier=None)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    # Float images fed as they are (segtorch does no normalisation on float input); uint8 masks converted
    # inside the step, as segtorch does.
    images = torch.randn(args.batch, 3, args.size, args.size)
    masks = torch.randint(0, args.classes, (args.batch, args.size, args.size), dtype=torch.uint8)

    def step():
        target = masks.long()
        out = model(images)["out"]
        loss = F.cross_entropy(out, target, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    reply({
        "ready": True,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
        "mkldnn": torch.backends.mkldnn.is_available(),
    })
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        try:
            if cmd == "quit":
                break
            if cmd == "info":
                names = [f"{n}:{list(t.shape)}".replace(" ", "") for n, t in model.named_parameters()]
                reply({"parameters": sum(t.numel() for t in model.parameters()), "names": names})
            elif cmd == "train":
                n = int(words[1])
                ms, cpu, losses = [], [], []
                for _ in range(n):
                    c = time.process_time()
                    a = time.perf_counter()
                    loss = step()
                    ms.append((time.perf_counter() - a) * 1e3)
                    cpu.append((time.process_time() - c) * 1e3)
                    losses.append(loss)
                reply({"ms": ms, "cpuMs": cpu, "loss": losses})
            else:
                raise ValueError(f"unknown command '{cmd}'")
        except Exception as e:  # report and keep serving
            reply({"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
