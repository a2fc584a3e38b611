"""PyTorch (Python) twins of the segtorch models bench/suite.js measures: torchvision's own
fcn_resnet50 and deeplabv3_resnet50, and minimal re-implementations of segtorch's pspnet/resnet50,
lwrefinenet/mobilenetv2, icnet/resnet50 and unet, layer for layer as native/models/*.cc builds them
(bench/suite.js checks that the parameter counts are equal). Every twin maps images [N,3,H,W] to
logits [N,K,H,W]; auxiliary heads are off on both sides.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def _resnet50_dilated(dilate=(False, True, True)):
    m = torchvision.models.resnet50(replace_stride_with_dilation=list(dilate))
    m.fc = nn.Identity()
    m.avgpool = nn.Identity()
    return m


def _stem(r, x):
    return r.maxpool(r.relu(r.bn1(r.conv1(x))))


def _up(x, like, align_corners=False):
    return F.interpolate(x, size=like.shape[-2:], mode='bilinear', align_corners=align_corners)


def _cbr(i, o, k, s=1, p=None, d=1):
    p = (k // 2) * d if p is None else p
    return nn.Sequential(nn.Conv2d(i, o, k, s, p, dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class TorchvisionSeg(nn.Module):
    def __init__(self, kind, classes):
        super().__init__()
        fn = getattr(torchvision.models.segmentation, kind)
        try:
            self.m = fn(weights=None, weights_backbone=None, num_classes=classes, aux_loss=False)
        except TypeError:
            self.m = fn(pretrained=False, pretrained_backbone=False, num_classes=classes, aux_loss=False)

    def forward(self, x):
        return self.m(x)['out']


class PSPNet(nn.Module):  # native/models/pspnet.cc + blocks/ppm.cc
    def __init__(self, classes):
        super().__init__()
        self.backbone = _resnet50_dilated()
        self.ppm = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(2048, 512, 1, bias=False),
                                                nn.BatchNorm2d(512), nn.ReLU()) for b in (1, 2, 3, 6)])
        self.cls = nn.Sequential(nn.Conv2d(4096, 512, 3, padding=1, bias=False), nn.BatchNorm2d(512), nn.ReLU(),
                                 nn.Dropout2d(0.1), nn.Conv2d(512, classes, 1))

    def forward(self, x):
        r = self.backbone
        f = r.layer4(r.layer3(r.layer2(r.layer1(_stem(r, x)))))
        f = torch.cat([f] + [_up(b(f), f) for b in self.ppm], 1)
        return _up(self.cls(f), x)


class CRP(nn.Module):  # blocks/refinenet.cc CRPBlock: 4 x (maxpool 5, 1x1 conv), summed
    def __init__(self, c):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(c, c, 1, bias=False) for _ in range(4)])

    def forward(self, x):
        top = x
        for conv in self.convs:
            top = conv(F.max_pool2d(top, 5, 1, 2))
            x = x + top
        return x


class Clamp6(nn.Module):
    """ReLU6 as clamp(0, 6), as segtorch has it: PyTorch 1.13's hardtanh backward has no bf16 CPU kernel."""

    def forward(self, x):
        return x.clamp(0, 6)


class LWRefineNetMobile(nn.Module):  # native/models/lwrefinenet.cc, mobilenetv2 branch, output stride 32
    def __init__(self, classes, w=256):
        super().__init__()
        self.features = torchvision.models.mobilenet_v2().features[:18]  # no last 1280 conv
        for m in self.features.modules():
            for name, child in m.named_children():
                if isinstance(child, nn.ReLU6):
                    setattr(m, name, Clamp6())
        c1 = lambda i: nn.Conv2d(i, w, 1, bias=False)  # noqa: E731
        self.conv8, self.conv7, self.conv6, self.conv5, self.conv4, self.conv3 = c1(320), c1(160), c1(96), c1(64), c1(32), c1(24)
        self.crp4, self.crp3, self.crp2, self.crp1 = CRP(w), CRP(w), CRP(w), CRP(w)
        self.adapt4, self.adapt3, self.adapt2 = c1(w), c1(w), c1(w)
        self.segm = nn.Conv2d(w, classes, 3, padding=1)

    def forward(self, x):
        f = []
        y = x
        for layer in self.features:
            y = layer(y)
            f.append(y)
        l3, l4, l5, l6, l7, l8 = f[3], f[6], f[10], f[13], f[16], f[17]
        act = lambda t: t.clamp(0, 6)  # noqa: E731
        y7 = self.crp4(act(self.conv8(l8) + self.conv7(l7)))
        y7 = _up(self.adapt4(y7), l6, True)
        y5 = self.crp3(act(self.conv5(l5) + self.conv6(l6) + y7))
        y5 = _up(self.adapt3(y5), l4, True)
        y4 = self.crp2(act(self.conv4(l4) + y5))
        y4 = _up(self.adapt2(y4), l3, True)
        y = self.crp1(act(self.conv3(l3) + y4))
        return _up(self.segm(y), x, True)


class CFF(nn.Module):  # icnet.cc CascadeFeatureFusion (eval: no low-resolution classifier output)
    def __init__(self, low, high, out, classes):
        super().__init__()
        self.conv_low = nn.Conv2d(low, out, 3, padding=2, dilation=2, bias=False)
        self.bn_low = nn.BatchNorm2d(out)
        self.conv_high = nn.Conv2d(high, out, 1, bias=False)
        self.bn_high = nn.BatchNorm2d(out)
        self.conv_low_cls = nn.Conv2d(low, classes, 1)

    def forward(self, low, high):
        up = _up(low, high, True)
        return F.relu(self.bn_low(self.conv_low(up)) + self.bn_high(self.conv_high(high))), up


class ICNet(nn.Module):  # native/models/icnet.cc, resnet50
    def __init__(self, classes):
        super().__init__()
        self.backbone = _resnet50_dilated()
        self.conv_sub1 = nn.Sequential(_cbr(3, 32, 3, 2), _cbr(32, 32, 3, 2), _cbr(32, 64, 3, 2))
        self.conv5_4_k1 = _cbr(2048, 256, 1)
        self.cff_24 = CFF(256, 512, 128, classes)
        self.cff_12 = CFF(128, 64, 128, classes)
        self.conv6_cls = nn.Conv2d(128, classes, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        r = self.backbone
        x2 = F.interpolate(x, size=(h // 2, w // 2), mode='bilinear', align_corners=True)
        sub2 = r.layer2(r.layer1(_stem(r, x2)))
        x4 = F.interpolate(x, size=(h // 4, w // 4), mode='bilinear', align_corners=True)
        sub4 = r.layer4(r.layer3(r.layer2(r.layer1(_stem(r, x4)))))
        pooled = sub4
        for b in (1, 2, 3, 6):
            pooled = pooled + _up(F.adaptive_avg_pool2d(sub4, b), sub4, True)
        sub4 = self.conv5_4_k1(pooled)
        sub1 = self.conv_sub1(x)
        f24, up24 = self.cff_24(sub4, sub2)
        f12, up12 = self.cff_12(f24, sub1)
        up = F.interpolate(f12, scale_factor=2, mode='bilinear', align_corners=True)
        logits4 = self.conv6_cls(up)
        # Training: the cascade label guidance segtorch's ICNet trains with (weights 0.4, 0.4, 1).
        self.aux_outputs = [(0.4, self.cff_24.conv_low_cls(up24)), (0.4, self.cff_12.conv_low_cls(up12)), (1.0, logits4)] if self.training else []
        return _up(logits4, x, True)


def _double(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(o, o, 3, padding=1), nn.ReLU(inplace=True))


class UNet(nn.Module):  # native/models/unet.cc defaults: 64 base channels, transposed up, dropout 0.5, no BN
    def __init__(self, classes, b=64):
        super().__init__()
        self.inc, self.down1, self.down2, self.down3, self.down4 = _double(3, b), _double(b, 2 * b), _double(2 * b, 4 * b), _double(4 * b, 8 * b), _double(8 * b, 16 * b)
        self.ups = nn.ModuleList([nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in (16 * b, 8 * b, 4 * b, 2 * b)])
        self.convs = nn.ModuleList([_double(c, c // 2) for c in (16 * b, 8 * b, 4 * b, 2 * b)])
        self.outc = nn.Conv2d(b, classes, 1)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(F.max_pool2d(x1, 2))
        x3 = self.down2(F.max_pool2d(x2, 2))
        x4 = self.drop(self.down3(F.max_pool2d(x3, 2)))
        x5 = self.drop(self.down4(F.max_pool2d(x4, 2)))
        y = x5
        for up, conv, skip in zip(self.ups, self.convs, (x4, x3, x2, x1)):
            y = conv(torch.cat([skip, up(y)], 1))
        return self.outc(y)


def build(name, classes=21):
    """name: segtorch's 'arch/backbone' as bench/suite.js names it."""
    if name == 'fcn/resnet50':
        return TorchvisionSeg('fcn_resnet50', classes)
    if name == 'deeplabv3/resnet50':
        return TorchvisionSeg('deeplabv3_resnet50', classes)
    if name == 'pspnet/resnet50':
        return PSPNet(classes)
    if name == 'lwrefinenet/mobilenetv2':
        return LWRefineNetMobile(classes)
    if name == 'icnet/resnet50':
        return ICNet(classes)
    if name == 'unet':
        return UNet(classes)
    raise SystemExit('unknown model ' + name)
