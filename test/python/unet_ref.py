"""PyTorch's U-Net forward on segtorch's state dict, written out with F.conv_transpose2d (the
upsampling segtorch computes as a 1x1 convolution + pixel_shuffle), in eval mode.
usage: unet_ref.py STATE X_BIN N C H W OUT_BIN"""
import sys

import numpy as np
import torch
import torch.nn.functional as F

state, xbin, n, c, h, w, out = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7]), sys.argv[7]
sd = torch.load(state)


def double(prefix, x):
    """A DoubleConv Sequential: conv [+ BN] + ReLU, twice (BN present when it has running stats)."""
    i = 0
    while f'{prefix}.{i}.weight' in sd:
        x = F.conv2d(x, sd[f'{prefix}.{i}.weight'], sd.get(f'{prefix}.{i}.bias'), padding=1)
        if f'{prefix}.{i + 1}.running_mean' in sd:
            bn = f'{prefix}.{i + 1}'
            x = F.batch_norm(x, sd[f'{bn}.running_mean'], sd[f'{bn}.running_var'], sd[f'{bn}.weight'], sd[f'{bn}.bias'])
            i += 1
        x = F.relu(x)
        i += 2
    return x


with torch.no_grad():
    x = torch.from_numpy(np.fromfile(xbin, dtype=np.float32).reshape(n, c, h, w))
    x1 = double('inc', x)
    x2 = double('down1', F.max_pool2d(x1, 2))
    x3 = double('down2', F.max_pool2d(x2, 2))
    x4 = double('down3', F.max_pool2d(x3, 2))
    x5 = double('down4', F.max_pool2d(x4, 2))
    y = x5
    for k, skip in zip((1, 2, 3, 4), (x4, x3, x2, x1)):
        up = F.conv_transpose2d(y, sd[f'up{k}.up.weight'], sd[f'up{k}.up.bias'], stride=2)
        y = double(f'up{k}.conv', torch.cat([skip, up], 1))
    F.conv2d(y, sd['outc.weight'], sd['outc.bias']).numpy().astype('float32').tofile(out)
print('ok')
