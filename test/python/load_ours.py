"""Loads a state dict written by segtorch's saveStateDict into the torchvision twin (strict) and
runs it on x.bin. usage: load_ours.py KIND STATE X_BIN H W OUT_BIN [channels_last]
With channels_last the weights are put in that layout, as segtorch trains them by default, so the
convolutions pick the same kernels and the outputs can be compared exactly."""
import sys

import numpy as np
import torch
import torchvision

kind, state, xbin, h, w, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
fn = getattr(torchvision.models.segmentation, kind)
aux = {} if kind.startswith('lraspp_') else {'aux_loss': True}  # LR-ASPP has no aux head
try:
    m = fn(weights=None, weights_backbone=None, num_classes=21, **aux)
except TypeError:
    m = fn(pretrained=False, pretrained_backbone=False, num_classes=21, **aux)
sd = torch.load(state)
assert type(sd).__name__ == 'OrderedDict', type(sd)
m.load_state_dict(sd, strict=True)
m.eval()
if len(sys.argv) > 7 and sys.argv[7] == 'channels_last':
    m = m.to(memory_format=torch.channels_last)
x = torch.from_numpy(np.fromfile(xbin, dtype=np.float32).reshape(1, 3, h, w))
with torch.no_grad():
    m(x)['out'].numpy().astype('float32').tofile(out)
print('ok')
