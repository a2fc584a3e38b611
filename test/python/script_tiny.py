"""Writes test/fixtures/script-tiny.pt, the TorchScript model of test/boundary.test.ts (5 KB: one
3x3 convolution, 3 -> 2 channels, torchvision's dict output).

usage: /usr/bin/python3 test/python/script_tiny.py test/fixtures/script-tiny.pt
"""
import sys
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {'out': F.relu(self.conv(x))}


torch.manual_seed(0)
torch.jit.script(Tiny().eval()).save(sys.argv[1])
