"""FCN-8s on VGG-16 in PyTorch (torchvision's vgg16 features, F.conv_transpose2d for the upscore
layers) with random weights for every key of segtorch's state dict; writes those weights (for
segtorch to load) and the eval output.
usage: fcn8s_ref.py OURS_STATE RAND_STATE X_BIN N H W OUT_BIN"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

ours, rand, xbin, n, h, w, out = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7]), sys.argv[7]
torch.manual_seed(0)
sd = torch.load(ours)
# weights ~ N(0, 2 / fan in) (He: activations stay O(1) through the 16 layers), biases ~ N(0, 0.1)
sd = type(sd)((k, torch.randn_like(v) * ((2 / v[0].numel()) ** 0.5 if v.dim() == 4 else 0.1)) for k, v in sd.items())
torch.save(sd, rand)

vgg = torchvision.models.vgg16().features
vgg.load_state_dict({k[len('backbone.features.'):]: v for k, v in sd.items() if k.startswith('backbone.features.')})
vgg.eval()
with torch.no_grad():
    x = torch.from_numpy(np.fromfile(xbin, dtype=np.float32).reshape(n, 3, h, w))
    pools = []
    for layer in vgg:
        x = layer(x)
        if isinstance(layer, torch.nn.MaxPool2d):
            pools.append(x)
    y = F.relu(F.conv2d(pools[4], sd['fc6.weight'], sd['fc6.bias'], padding=3))
    y = F.relu(F.conv2d(y, sd['fc7.weight'], sd['fc7.bias']))
    score = F.conv2d(y, sd['score_fr.weight'], sd['score_fr.bias'])
    score = F.conv_transpose2d(score, sd['upscore2.weight'], stride=2, padding=1) + F.conv2d(pools[3], sd['score_pool4.weight'], sd['score_pool4.bias'])
    score = F.conv_transpose2d(score, sd['upscore_pool4.weight'], stride=2, padding=1) + F.conv2d(pools[2], sd['score_pool3.weight'], sd['score_pool3.bias'])
    F.conv_transpose2d(score, sd['upscore8.weight'], stride=8, padding=4).numpy().astype('float32').tofile(out)
print('ok')
