"""Exports small TorchScript segmentation models (scripted and traced) with reference outputs, for
test/torchscript.test.ts.

usage: /usr/bin/python3 torchscript.py OUTDIR
Writes OUTDIR/<name>.pt and float32 little-endian .bin files; prints a JSON line {torch}.
"""
import json
import os
import sys
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = sys.argv[1]
torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get('TS_THREADS', '1')))
K = 3
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class Body(nn.Module):
    """conv-bn-relu, a stride-2 conv, 1x1 classifier: logits at half resolution."""

    def __init__(self, cin=3, k=K):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.classifier = nn.Conv2d(8, k, 1)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return self.classifier(F.relu(self.conv2(x)))


class DictModel(nn.Module):
    """torchvision's convention: {'out': logits at the input size, 'aux': ...}."""

    def __init__(self):
        super().__init__()
        self.body = Body()

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        y = self.body(x)
        out = F.interpolate(y, size=x.shape[-2:], mode='bilinear', align_corners=False)
        return {'aux': y, 'out': out}


class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Body()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        y = self.body(x)
        return F.interpolate(y, size=x.shape[-2:], mode='bilinear', align_corners=False), y


class Classifier(nn.Module):
    """An image classifier: [N, C] logits, not a segmentation map."""

    def __init__(self):
        super().__init__()
        self.body = Body()

    def forward(self, x):
        return self.body(x).mean(dim=(2, 3))


class Text(nn.Module):
    def forward(self, x: torch.Tensor) -> str:
        return 'not a tensor'


def init(m):
    # BatchNorm running statistics that are not the identity, so eval mode matters.
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def save(name, t):
    t.detach().contiguous().float().numpy().astype('<f4').tofile(os.path.join(OUT, name))


def slide(f, x, crop, stride):
    """The sliding-window average segtorch computes (logits summed per pixel, divided by coverage)."""
    n, _, h, w = x.shape
    ch, cw = crop
    sh, sw = stride
    rows = max(1, (h - ch + sh - 1) // sh + 1)
    cols = max(1, (w - cw + sw - 1) // sw + 1)
    acc, count = None, torch.zeros(1, 1, h, w)
    for r in range(rows):
        for c in range(cols):
            y0, x0 = min(r * sh, h - ch), min(c * sw, w - cw)
            out = f(x[:, :, y0:y0 + ch, x0:x0 + cw])
            if acc is None:
                acc = torch.zeros(n, out.shape[1], h, w)
            acc[:, :, y0:y0 + ch, x0:x0 + cw] += out
            count[:, :, y0:y0 + ch, x0:x0 + cw] += 1
    return acc / count


with torch.no_grad():
    dict_model = init(DictModel())
    scripted = torch.jit.script(dict_model)
    scripted.save(os.path.join(OUT, 'dict.pt'))
    x = torch.randn(2, 3, 32, 48)
    save('x.bin', x)
    save('dict_logits.bin', dict_model(x)['out'])
    # uint8 input, normalised as our models do
    u8 = torch.randint(0, 256, (1, 3, 32, 48), dtype=torch.uint8)
    u8.numpy().tofile(os.path.join(OUT, 'u8.bin'))
    save('dict_u8_logits.bin', dict_model((u8.float() / 255 - MEAN) / STD)['out'])

    def logits(t):
        return dict_model(t)['out']
    # flip: logits averaged with those of the mirrored image
    save('dict_flip_logits.bin', (logits(x) + logits(x.flip(3)).flip(3)) / 2)
    # slide: 32x32 windows, stride [32, 16] over 32x48: windows at x0 = 0 and 16
    save('dict_slide_logits.bin', slide(logits, x, (32, 32), (32, 16)))

    tuple_model = init(TupleModel())
    torch.jit.script(tuple_model).save(os.path.join(OUT, 'tuple.pt'))
    save('tuple_logits.bin', tuple_model(x)[0])

    # a traced plain tensor output at half resolution: segtorch resizes it to the input size
    body = init(Body())
    torch.jit.trace(body, torch.randn(1, 3, 32, 32)).save(os.path.join(OUT, 'tensor.pt'))
    save('tensor_logits.bin', F.interpolate(body(x), size=(32, 48), mode='bilinear', align_corners=False))

    torch.jit.script(init(Classifier())).save(os.path.join(OUT, 'classifier.pt'))
    torch.jit.script(Text()).save(os.path.join(OUT, 'text.pt'))
    torch.save(dict_model.state_dict(), os.path.join(OUT, 'state_dict.pt'))
    data = open(os.path.join(OUT, 'dict.pt'), 'rb').read()
    open(os.path.join(OUT, 'truncated.pt'), 'wb').write(data[:len(data) // 2])
    open(os.path.join(OUT, 'garbage.pt'), 'wb').write(b'this is not a model\n' * 10)

    # a real torchvision segmentation model (scripted, dict output, hardswish, SE blocks)
    import torchvision
    seg = torchvision.models.segmentation
    try:
        lraspp = seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=K)
    except TypeError:  # older torchvision
        lraspp = seg.lraspp_mobilenet_v3_large(pretrained=False, pretrained_backbone=False, num_classes=K)
    lraspp = init(lraspp)
    torch.jit.script(lraspp).save(os.path.join(OUT, 'lraspp.pt'))
    save('lraspp_logits.bin', lraspp(x)['out'])

print(json.dumps({'torch': torch.__version__}))
