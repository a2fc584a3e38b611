"""PyTorch (Python) twins of every segtorch architecture, for bench/suite.js.

Each twin is built layer for layer as native/models/*.cc builds the network (and, where torchvision
has the very same network, it is torchvision's own: fcn_resnet50, deeplabv3_resnet101,
deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large). Module names follow segtorch's state dict
(backbone.layer1.0.conv1.weight, ppm.features.0.1.weight, ...), so `python3 bench/torch_twins.py
--check DIR` compares every tensor's name and shape with segtorch's `stateDictShapes()` dumps, and the
suite's table prints `=` when the parameter counts are equal (21 classes, auxiliary heads off).

Contract: build(name) -> nn.Module mapping images [N,3,H,W] to logits [N,K,H,W] in eval mode. In
training mode a twin with training-only outputs (ICNet's cascade guidance, DFN's deep supervision and
border network) returns (logits, [(weight, tensor, kind), ...]) with kind 'ce' (cross-entropy on labels
resized to the tensor) or 'border' (DFN's binary focal loss on label boundaries), as segtorch trains them.
Forward passes avoid Python side effects so that torch.compile sees one graph.

name: 'arch' (its default backbone) or 'arch/backbone', as segtorch's createModel takes them.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

# The default backbone of each architecture (lib/models.ts ARCHITECTURES); bench/suite.js passes
# 'arch/backbone' explicitly, this is for direct use.
DEFAULT_BACKBONE = {
    'fcn': 'resnet50', 'segnet': 'vgg16_bn', 'unet': 'none', 'dilated': 'vgg16', 'deeplabv2': 'resnet101',
    'deeplabv3': 'resnet101', 'lraspp': 'mobilenetv3_large', 'deeplabv3plus': 'resnet101', 'pspnet': 'resnet101',
    'upernet': 'resnet50', 'deeplabv1': 'vgg16', 'refinenet': 'resnet101', 'lwrefinenet': 'resnet50',
    'mtrefinenet': 'mobilenetv2', 'icnet': 'resnet50', 'gcn': 'resnet152', 'dfn': 'resnet101',
}


# ------------------------------------------------------------------------------------------------
# Backbones (native/backbones/*.cc)
# ------------------------------------------------------------------------------------------------
class ResNet(nn.Module):
    """torchvision's ResNet without avgpool/fc; output stride 8/16/32 by dilating layer3/layer4
    (backbones/resnet.cc). forward -> [layer1, layer2, layer3, layer4]."""

    def __init__(self, depth, output_stride=32):
        super().__init__()
        dil = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
        r = getattr(torchvision.models, depth)(replace_stride_with_dilation=dil) if any(dil) else getattr(torchvision.models, depth)()
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def stem(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x):
        x = self.stem(x)
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3, self.layer4(f3)]


RESNET_CHANNELS = {'resnet18': [64, 128, 256, 512], 'resnet34': [64, 128, 256, 512]}


def _resnet_channels(depth):
    return RESNET_CHANNELS.get(depth, [256, 512, 1024, 2048])


class VGG(nn.Module):
    """VGG-16 (configuration D) as backbones/vgg.cc: `features` indexed as torchvision's; at output
    stride 8 pool4/pool5 keep the resolution (an Identity, or a 3x3 stride-1 pool with pool_kernel 3)
    and conv5 is dilated by 2. forward -> [pool1 .. pool5]."""

    CFG = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]

    def __init__(self, batch_norm=False, output_stride=32, pool_kernel=2):
        super().__init__()
        layers, self.blocks, self.pools = [], [], []
        cin = 3
        for b, outs in enumerate(self.CFG):
            strided = not ((output_stride <= 8 and b == 3) or (output_stride <= 16 and b == 4))
            d = 2 if (output_stride == 8 and b == 4) else 1
            begin = len(layers)
            for o in outs:
                layers.append(nn.Conv2d(cin, o, 3, padding=d, dilation=d))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(o))
                layers.append(nn.ReLU(inplace=True))
                cin = o
            self.blocks.append((begin, len(layers)))
            self.pools.append(len(layers))
            if pool_kernel == 2:
                layers.append(nn.MaxPool2d(2, 2) if strided else nn.Identity())
            else:
                layers.append(nn.MaxPool2d(3, 2 if strided else 1, 1))
        self.features = nn.Sequential(*layers)

    def block(self, i, x):
        a, b = self.blocks[i]
        for m in self.features[a:b]:
            x = m(x)
        return x

    def forward(self, x):
        out = []
        for i in range(5):
            x = self.features[self.pools[i]](self.block(i, x))
            out.append(x)
        return out


class Clamp6(nn.Module):
    """ReLU6 as clamp(0, 6), as segtorch has it (PyTorch 1.13's hardtanh backward has no bf16 CPU kernel)."""

    def forward(self, x):
        return x.clamp(0, 6)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 features without the last 1280 conv (backbones/mobilenet_v2.cc,
    last_conv false), ReLU6 as clamp. forward_all -> every block's output."""

    def __init__(self):
        super().__init__()
        self.features = torchvision.models.mobilenet_v2().features[:18]
        for m in self.features.modules():
            for name, child in m.named_children():
                if isinstance(child, nn.ReLU6):
                    setattr(m, name, Clamp6())

    def forward_all(self, x):
        out = []
        for layer in self.features:
            x = layer(x)
            out.append(x)
        return out


# ------------------------------------------------------------------------------------------------
# Blocks (native/blocks/*.cc)
# ------------------------------------------------------------------------------------------------
def _up(x, like, align_corners=False):
    return F.interpolate(x, size=like.shape[-2:], mode='bilinear', align_corners=align_corners)


def _up_to(x, size, align_corners=False):
    return F.interpolate(x, size=size, mode='bilinear', align_corners=align_corners)


def _cbr(i, o, k, s=1, d=1):
    """ConvBNReLUSeq: conv (no bias) + BN + ReLU, children 0, 1, 2."""
    return nn.Sequential(nn.Conv2d(i, o, k, s, d * (k - 1) // 2, dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class ASPP(nn.Module):
    """blocks/aspp.cc (torchvision's ASPP with the dropout as an option): convs.0 1x1, convs.1-3 3x3 at
    the rates, convs.4 image pooling; project 1x1 over the concatenation."""

    def __init__(self, cin, rates, out=256, dropout=0.5):
        super().__init__()
        branches = [_cbr(cin, out, 1)] + [_cbr(cin, out, 3, d=r) for r in rates]
        branches.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * out, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x):
        res = [b(x) for b in self.convs[:-1]]
        res.append(_up(self.convs[-1](x), x))
        return self.project(torch.cat(res, 1))


class PPM(nn.Module):
    """blocks/ppm.cc: features.i = (adaptive pool bin, 1x1 conv, BN, ReLU), concatenated with the input."""

    def __init__(self, cin, ch, bins=(1, 2, 3, 6)):
        super().__init__()
        self.features = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(cin, ch, 1, bias=False),
                                                     nn.BatchNorm2d(ch), nn.ReLU()) for b in bins])

    def forward(self, x):
        return torch.cat([x] + [_up(b(x), x) for b in self.features], 1)


class CRPBlock(nn.Module):
    """blocks/refinenet.cc CRPBlock: `stages` x (max-pool 5 stride 1, conv), each added to the sum;
    convs named 1_outvar_dimred, 2_outvar_dimred, ..."""

    def __init__(self, c, stages, kernel=1, depthwise=False):
        super().__init__()
        self.n = stages
        for i in range(1, stages + 1):
            self.add_module(f'{i}_outvar_dimred', nn.Conv2d(c, c, kernel, padding=kernel // 2, groups=c if depthwise else 1, bias=False))

    def forward(self, x):
        top = x
        for i in range(1, self.n + 1):
            top = getattr(self, f'{i}_outvar_dimred')(F.max_pool2d(top, 5, 1, 2))
            x = x + top
        return x


class RCUBlock(nn.Module):
    """blocks/refinenet.cc RCUBlock: `blocks` x (x + conv(relu(conv(relu(x)))))."""

    def __init__(self, c, blocks):
        super().__init__()
        self.n = blocks
        for i in range(1, blocks + 1):
            self.add_module(f'{i}_conv', nn.Conv2d(c, c, 3, padding=1, bias=True))
            self.add_module(f'{i}_conv_relu_varout_dimred', nn.Conv2d(c, c, 3, padding=1, bias=False))

    def forward(self, x):
        for i in range(1, self.n + 1):
            x = x + getattr(self, f'{i}_conv_relu_varout_dimred')(F.relu(getattr(self, f'{i}_conv')(F.relu(x))))
        return x


def _crp_stack(c, stages, kernel=1, depthwise=False):
    return nn.Sequential(CRPBlock(c, stages, kernel, depthwise))


def _rcu_stack(c, blocks):
    return nn.Sequential(RCUBlock(c, blocks))


def _fcn_head(cin, classes):
    """torchvision's FCNHead: 3x3 conv to cin/4, BN, ReLU, dropout 0.1, 1x1 to the classes."""
    mid = cin // 4
    return nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(), nn.Dropout(0.1), nn.Conv2d(mid, classes, 1))


# ------------------------------------------------------------------------------------------------
# Architectures (native/models/*.cc)
# ------------------------------------------------------------------------------------------------
class TorchvisionSeg(nn.Module):
    """torchvision's own segmentation network (no aux head): the same network as segtorch's."""

    def __init__(self, kind, classes):
        super().__init__()
        fn = getattr(torchvision.models.segmentation, kind)
        try:
            m = fn(weights=None, weights_backbone=None, num_classes=classes, aux_loss=False)
        except TypeError:
            m = fn(pretrained=False, pretrained_backbone=False, num_classes=classes, aux_loss=False)
        # Registered at the top level so that names read backbone.*, classifier.* as segtorch's.
        self.backbone, self.classifier = m.backbone, m.classifier
        self.lraspp = kind.startswith('lraspp')

    def forward(self, x):
        f = self.backbone(x)
        y = self.classifier(f) if self.lraspp else self.classifier(f['out'])
        return _up(y, x)


class FCNResNet(nn.Module):  # fcn.cc FCNResNet (torchvision fcn_resnet*, any depth)
    def __init__(self, depth, classes, output_stride=8):
        super().__init__()
        self.backbone = ResNet(depth, output_stride)
        self.classifier = _fcn_head(_resnet_channels(depth)[3], classes)

    def forward(self, x):
        return _up(self.classifier(self.backbone(x)[3]), x)


class FCNVGG(nn.Module):  # fcn.cc FCNVGG, variant 8s: fc6 padded, transposed convs pad f/2, no crops
    def __init__(self, bn, classes):
        super().__init__()
        k = classes
        self.backbone = VGG(bn)
        self.fc6, self.fc7 = nn.Conv2d(512, 4096, 7, padding=3), nn.Conv2d(4096, 4096, 1)
        self.drop6, self.drop7 = nn.Dropout(0.5), nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(4096, k, 1)
        self.upscore2 = nn.ConvTranspose2d(k, k, 4, 2, 1, bias=False)
        self.score_pool4 = nn.Conv2d(512, k, 1)
        self.upscore_pool4 = nn.ConvTranspose2d(k, k, 4, 2, 1, bias=False)
        self.score_pool3 = nn.Conv2d(256, k, 1)
        self.upscore8 = nn.ConvTranspose2d(k, k, 16, 8, 4, bias=False)
        self.upscore8.weight.requires_grad_(False)  # fixed bilinear, as segtorch (counted in its parameters)

    def forward(self, x):
        f = self.backbone(x)
        h = self.drop7(F.relu(self.fc7(self.drop6(F.relu(self.fc6(f[4]))))))
        s = self.upscore2(self.score_fr(h)) + self.score_pool4(f[3])
        s = self.upscore_pool4(s) + self.score_pool3(f[2])
        return self.upscore8(s)


class SegNet(nn.Module):  # segnet.cc: VGG-16(-BN) encoder, max-unpooling decoder mirroring it
    def __init__(self, bn, classes):
        super().__init__()
        self.backbone = VGG(bn)

        def stage(convs):
            layers = []
            for i, o in convs:
                layers += [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)
        self.dec5 = stage([(512, 512), (512, 512), (512, 512)])
        self.dec4 = stage([(512, 512), (512, 512), (512, 256)])
        self.dec3 = stage([(256, 256), (256, 256), (256, 128)])
        self.dec2 = stage([(128, 128), (128, 64)])
        self.dec1 = stage([(64, 64)])
        self.classifier = nn.Conv2d(64, classes, 3, padding=1)

    def forward(self, x):
        idx, sizes = [], []
        for i in range(5):
            x = self.backbone.block(i, x)
            sizes.append(x.shape[-2:])
            x, ind = F.max_pool2d(x, 2, 2, return_indices=True)
            idx.append(ind)
        for i, dec in zip(range(4, -1, -1), (self.dec5, self.dec4, self.dec3, self.dec2, self.dec1)):
            x = dec(F.max_unpool2d(x, idx[i], 2, 2, output_size=sizes[i]))
        return self.classifier(x)


def _double(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(o, o, 3, padding=1), nn.ReLU(inplace=True))


class UNetUp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.up = nn.ConvTranspose2d(c, c // 2, 2, stride=2)
        self.conv = _double(c, c // 2)

    def forward(self, y, skip):
        return self.conv(torch.cat([skip, self.up(y)], 1))


class UNet(nn.Module):  # unet.cc defaults: 64 base channels, transposed up, dropout 0.5, no BN
    def __init__(self, classes, b=64):
        super().__init__()
        self.inc, self.down1, self.down2, self.down3, self.down4 = _double(3, b), _double(b, 2 * b), _double(2 * b, 4 * b), _double(4 * b, 8 * b), _double(8 * b, 16 * b)
        self.up1, self.up2, self.up3, self.up4 = UNetUp(16 * b), UNetUp(8 * b), UNetUp(4 * b), UNetUp(2 * b)
        self.outc = nn.Conv2d(b, classes, 1)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(F.max_pool2d(x1, 2))
        x3 = self.down2(F.max_pool2d(x2, 2))
        x4 = self.drop(self.down3(F.max_pool2d(x3, 2)))
        x5 = self.drop(self.down4(F.max_pool2d(x4, 2)))
        y = self.up4(self.up3(self.up2(self.up1(x5, x4), x3), x2), x1)
        return self.outc(y)


class Dilated(nn.Module):  # dilated.cc: VGG-16 front end (stride 8, fc6 dilated 4) + basic context module
    CTX = [('ctx_conv1_1', 3, 1), ('ctx_conv1_2', 3, 1), ('ctx_conv2_1', 3, 2), ('ctx_conv3_1', 3, 4),
           ('ctx_conv4_1', 3, 8), ('ctx_conv5_1', 3, 16), ('ctx_fc1', 3, 1), ('ctx_final', 1, 1)]

    def __init__(self, bn, classes):
        super().__init__()
        k = classes
        self.backbone = VGG(bn, output_stride=8)
        # segtorch runs fc6 by space-to-batch on the CPU (same function, a faster kernel); the twin
        # runs the dilated convolution as PyTorch users write it.
        self.fc6, self.fc7, self.final = nn.Conv2d(512, 4096, 7, padding=12, dilation=4), nn.Conv2d(4096, 4096, 1), nn.Conv2d(4096, k, 1)
        self.drop6, self.drop7 = nn.Dropout(0.5), nn.Dropout(0.5)
        self.ctx = [name for name, _, _ in self.CTX]
        for name, kern, d in self.CTX:
            self.add_module(name, nn.Conv2d(k, k, kern, padding=d * (kern // 2), dilation=d))

    def forward(self, x):
        h = self.backbone(x)[4]
        h = self.drop7(F.relu(self.fc7(self.drop6(F.relu(self.fc6(h))))))
        h = self.final(h)
        for i, name in enumerate(self.ctx):
            h = getattr(self, name)(h)
            if i + 1 < len(self.ctx):
                h = F.relu(h)
        return _up(h, x)


class DeepLabV1(nn.Module):  # deeplabv1.cc: DeepLab-LargeFOV
    def __init__(self, bn, classes):
        super().__init__()
        self.backbone = VGG(bn, output_stride=8, pool_kernel=3)
        self.fc6, self.fc7, self.fc8 = nn.Conv2d(512, 1024, 3, padding=12, dilation=12), nn.Conv2d(1024, 1024, 1), nn.Conv2d(1024, classes, 1)
        self.drop6, self.drop7 = nn.Dropout(0.5), nn.Dropout(0.5)

    def forward(self, x):
        h = F.avg_pool2d(self.backbone(x)[4], 3, 1, 1)
        h = self.drop7(F.relu(self.fc7(self.drop6(F.relu(self.fc6(h))))))
        return _up(self.fc8(h), x)


class ASPPSum(nn.Module):
    def __init__(self, cin, classes, rates):
        super().__init__()
        self.n = len(rates)
        for i, r in enumerate(rates):
            self.add_module(f'c{i}', nn.Conv2d(cin, classes, 3, padding=r, dilation=r))

    def forward(self, x):
        out = self.c0(x)
        for i in range(1, self.n):
            out = out + getattr(self, f'c{i}')(x)
        return out


class DeepLabV2(nn.Module):  # deeplabv2.cc: ResNet + ASPP-L (summed class scores)
    def __init__(self, depth, classes, output_stride=8):
        super().__init__()
        self.backbone = ResNet(depth, output_stride)
        self.aspp = ASPPSum(_resnet_channels(depth)[3], classes, [r * 8 // output_stride for r in (6, 12, 18, 24)])

    def forward(self, x):
        return _up(self.aspp(self.backbone(x)[3]), x)


class DeepLabV3(nn.Module):  # deeplabv3.cc on a ResNet (= torchvision deeplabv3_resnet50/101)
    def __init__(self, depth, classes, output_stride=8):
        super().__init__()
        m = 16 // output_stride
        self.backbone = ResNet(depth, output_stride)
        self.classifier = nn.Sequential(ASPP(_resnet_channels(depth)[3], [6 * m, 12 * m, 18 * m], dropout=0.5),
                                        nn.Conv2d(256, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(), nn.Conv2d(256, classes, 1))

    def forward(self, x):
        return _up(self.classifier(self.backbone(x)[3]), x)


class DeepLabV3PlusDecoder(nn.Module):
    def __init__(self, low, aspp):
        super().__init__()
        self.feature_projection = _cbr(low, 48, 1)
        self.decoder_conv0 = _cbr(aspp + 48, 256, 3)
        self.decoder_conv1 = _cbr(256, 256, 3)

    def forward(self, enc, low):
        low = self.feature_projection(low)
        return self.decoder_conv1(self.decoder_conv0(torch.cat([_up(enc, low), low], 1)))


class DeepLabV3Plus(nn.Module):  # deeplabv3plus.cc, ResNet, separable false
    def __init__(self, depth, classes, output_stride=16):
        super().__init__()
        m = 16 // output_stride
        ch = _resnet_channels(depth)
        self.backbone = ResNet(depth, output_stride)
        self.aspp = ASPP(ch[3], [6 * m, 12 * m, 18 * m], dropout=0.1)
        self.decoder = DeepLabV3PlusDecoder(ch[0], 256)
        self.classifier = nn.Conv2d(256, classes, 1)

    def forward(self, x):
        f = self.backbone(x)
        return _up(self.classifier(self.decoder(self.aspp(f[3]), f[0])), x)


class PSPNet(nn.Module):  # pspnet.cc + blocks/ppm.cc
    def __init__(self, depth, classes, output_stride=8):
        super().__init__()
        c = _resnet_channels(depth)[3]
        self.backbone = ResNet(depth, output_stride)
        self.ppm = PPM(c, c // 4)
        self.cls = nn.Sequential(nn.Conv2d(2 * c, 512, 3, padding=1, bias=False), nn.BatchNorm2d(512), nn.ReLU(),
                                 nn.Dropout2d(0.1), nn.Conv2d(512, classes, 1))

    def forward(self, x):
        return _up(self.cls(self.ppm(self.backbone(x)[3])), x)


class UPerNet(nn.Module):  # upernet.cc (mmsegmentation's UPerHead)
    def __init__(self, depth, classes, ch=512):
        super().__init__()
        c = _resnet_channels(depth)
        self.backbone = ResNet(depth, 32)
        self.ppm = PPM(c[3], ch)
        self.bottleneck = _cbr(c[3] + 4 * ch, ch, 3)
        self.lateral_convs = nn.ModuleList([_cbr(c[i], ch, 1) for i in range(3)])
        self.fpn_convs = nn.ModuleList([_cbr(ch, ch, 3) for _ in range(3)])
        self.fpn_bottleneck = _cbr(4 * ch, ch, 3)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(ch, classes, 1)

    def forward(self, x):
        f = self.backbone(x)
        lat = [conv(f[i]) for i, conv in enumerate(self.lateral_convs)] + [self.bottleneck(self.ppm(f[3]))]
        for i in range(3, 0, -1):
            lat[i - 1] = lat[i - 1] + _up(lat[i], lat[i - 1])
        outs = [conv(lat[i]) for i, conv in enumerate(self.fpn_convs)] + [lat[3]]
        outs = [outs[0]] + [_up(o, outs[0]) for o in outs[1:]]
        return _up(self.conv_seg(self.dropout(self.fpn_bottleneck(torch.cat(outs, 1)))), x)


class RefineNet(nn.Module):  # refinenet.cc: 4-cascaded, crpBlocks 2, outputRcus 1 (RefineNet-1: 3)
    def __init__(self, depth, classes, crp=2, rcus=1):
        super().__init__()
        ch = _resnet_channels(depth)

        def c3(i, o):
            return nn.Conv2d(i, o, 3, padding=1, bias=False)
        self.backbone = ResNet(depth, 32)
        self.p_ims1d2_outl1_dimred = c3(ch[3], 512)
        self.adapt_stage1_b = _rcu_stack(512, 2)
        self.mflow_conv_g1_pool = _crp_stack(512, crp, 3)
        self.mflow_conv_g1_b = _rcu_stack(512, rcus)
        self.mflow_conv_g1_b3_joint_varout_dimred = c3(512, 256)
        for s, cin in ((2, ch[2]), (3, ch[1]), (4, ch[0])):
            setattr(self, f'p_ims1d2_outl{s}_dimred', c3(cin, 256))
            setattr(self, f'adapt_stage{s}_b', _rcu_stack(256, 2))
            setattr(self, f'adapt_stage{s}_b2_joint_varout_dimred', c3(256, 256))
            setattr(self, f'mflow_conv_g{s}_pool', _crp_stack(256, crp, 3))
            setattr(self, f'mflow_conv_g{s}_b', _rcu_stack(256, 3 if s == 4 else rcus))
            if s < 4:
                setattr(self, f'mflow_conv_g{s}_b3_joint_varout_dimred', c3(256, 256))
        self.clf_conv = nn.Conv2d(256, classes, 3, padding=1)

    def forward(self, x):
        f = self.backbone(x)
        y = self.adapt_stage1_b(self.p_ims1d2_outl1_dimred(f[3]))
        y = self.mflow_conv_g1_b(self.mflow_conv_g1_pool(F.relu(y)))
        y = _up(self.mflow_conv_g1_b3_joint_varout_dimred(y), f[2], True)
        for s in (2, 3, 4):
            g = getattr(self, f'adapt_stage{s}_b2_joint_varout_dimred')(getattr(self, f'adapt_stage{s}_b')(getattr(self, f'p_ims1d2_outl{s}_dimred')(f[4 - s])))
            y = getattr(self, f'mflow_conv_g{s}_b')(getattr(self, f'mflow_conv_g{s}_pool')(F.relu(g + y)))
            if s < 4:
                y = _up(getattr(self, f'mflow_conv_g{s}_b3_joint_varout_dimred')(y), f[3 - s], True)
        return _up(self.clf_conv(y), x)


class LWRefineNetTrunk(nn.Module):  # lwrefinenet.cc LWRefineNetTrunk (ResNet or MobileNetV2)
    W = 256

    def __init__(self, backbone, depthwise_last_crp, align_corners):
        super().__init__()
        w, self.ac = self.W, align_corners

        def c1(i, o):
            return nn.Conv2d(i, o, 1, bias=False)
        self.mobile = backbone == 'mobilenetv2'
        if self.mobile:
            self.backbone = MobileNetV2()
            self.conv8, self.conv7, self.conv6, self.conv5, self.conv4, self.conv3 = c1(320, w), c1(160, w), c1(96, w), c1(64, w), c1(32, w), c1(24, w)
            self.crp4, self.crp3, self.crp2 = _crp_stack(w, 4), _crp_stack(w, 4), _crp_stack(w, 4)
            self.crp1 = _crp_stack(w, 4, 1, depthwise_last_crp)
            self.conv_adapt4, self.conv_adapt3, self.conv_adapt2 = c1(w, w), c1(w, w), c1(w, w)
            return
        ch = _resnet_channels(backbone)
        self.backbone = ResNet(backbone, 32)
        self.p_ims1d2_outl1_dimred = c1(ch[3], 2 * w)
        self.mflow_conv_g1_pool = _crp_stack(2 * w, 4)
        self.mflow_conv_g1_b3_joint_varout_dimred = c1(2 * w, w)
        for s, cin in ((2, ch[2]), (3, ch[1]), (4, ch[0])):
            setattr(self, f'p_ims1d2_outl{s}_dimred', c1(cin, w))
            setattr(self, f'adapt_stage{s}_b2_joint_varout_dimred', c1(w, w))
            setattr(self, f'mflow_conv_g{s}_pool', _crp_stack(w, 4, 1, depthwise_last_crp and s == 4))
            if s < 4:
                setattr(self, f'mflow_conv_g{s}_b3_joint_varout_dimred', c1(w, w))

    def act(self, x):
        return x.clamp(0, 6) if self.mobile else F.relu(x)

    def decode(self, x):
        if self.mobile:
            f = self.backbone.forward_all(x)
            l3, l4, l5, l6, l7, l8 = f[3], f[6], f[10], f[13], f[16], f[17]
            y = _up(self.conv_adapt4(self.crp4(self.act(self.conv8(l8) + self.conv7(l7)))), l6, self.ac)
            y = _up(self.conv_adapt3(self.crp3(self.act(self.conv5(l5) + self.conv6(l6) + y))), l4, self.ac)
            y = _up(self.conv_adapt2(self.crp2(self.act(self.conv4(l4) + y))), l3, self.ac)
            return self.crp1(self.act(self.conv3(l3) + y))
        f = self.backbone(x)
        y = self.mflow_conv_g1_pool(F.relu(self.p_ims1d2_outl1_dimred(f[3])))
        y = _up(self.mflow_conv_g1_b3_joint_varout_dimred(y), f[2], self.ac)
        for s in (2, 3, 4):
            g = getattr(self, f'adapt_stage{s}_b2_joint_varout_dimred')(getattr(self, f'p_ims1d2_outl{s}_dimred')(f[4 - s]))
            y = getattr(self, f'mflow_conv_g{s}_pool')(F.relu(g + y))
            if s < 4:
                y = _up(getattr(self, f'mflow_conv_g{s}_b3_joint_varout_dimred')(y), f[3 - s], self.ac)
        return y


class LWRefineNet(LWRefineNetTrunk):
    def __init__(self, backbone, classes):
        super().__init__(backbone, False, True)
        clf = nn.Conv2d(self.W, classes, 3, padding=1)
        self.clf_name = 'segm' if self.mobile else 'clf_conv'
        self.add_module(self.clf_name, clf)

    def forward(self, x):
        return _up(getattr(self, self.clf_name)(self.decode(x)), x)


class MTRefineNet(LWRefineNetTrunk):  # mtrefinenet.cc: shared trunk, segmentation + depth heads
    def __init__(self, backbone, classes):
        super().__init__(backbone, True, False)
        w = self.W
        self.pre_depth = nn.Conv2d(w, w, 1, groups=w, bias=False)
        self.depth = nn.Conv2d(w, 1, 3, padding=1)
        self.pre_segm = nn.Conv2d(w, w, 1, groups=w, bias=False)
        self.segm = nn.Conv2d(w, classes, 3, padding=1)

    def forward(self, x):
        shared = self.decode(x)
        out = _up(self.segm(self.act(self.pre_segm(shared))), x)
        # segtorch computes the depth output in every forward (without depth labels it is not in the loss)
        depth = _up(self.depth(self.act(self.pre_depth(shared))), x)
        return (out, [(0.0, depth, 'none')]) if self.training else out


class CFF(nn.Module):  # icnet.cc CascadeFeatureFusion
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


class ICNet(nn.Module):  # icnet.cc
    def __init__(self, depth, classes):
        super().__init__()
        ch = _resnet_channels(depth)
        self.backbone = ResNet(depth, 8)
        self.conv_sub1 = nn.Sequential(_cbr(3, 32, 3, 2), _cbr(32, 32, 3, 2), _cbr(32, 64, 3, 2))
        self.conv5_4_k1 = _cbr(ch[3], 256, 1)
        self.cff_24 = CFF(256, ch[1], 128, classes)
        self.cff_12 = CFF(128, 64, 128, classes)
        self.conv6_cls = nn.Conv2d(128, classes, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        r = self.backbone
        x2 = _up_to(x, (h // 2, w // 2), True)
        sub2 = r.layer2(r.layer1(r.stem(x2)))
        x4 = _up_to(x, (h // 4, w // 4), True)
        sub4 = r.layer4(r.layer3(r.layer2(r.layer1(r.stem(x4)))))
        pooled = sub4
        for b in (1, 2, 3, 6):
            pooled = pooled + _up(F.adaptive_avg_pool2d(sub4, b), sub4, True)
        sub4 = self.conv5_4_k1(pooled)
        sub1 = self.conv_sub1(x)
        f24, up24 = self.cff_24(sub4, sub2)
        f12, up12 = self.cff_12(f24, sub1)
        up = F.interpolate(f12, scale_factor=2, mode='bilinear', align_corners=True)
        logits4 = self.conv6_cls(up)
        out = _up(logits4, x)  # align_corners false here (icnet.cc ResizeLike)
        if not self.training:
            return out
        # The cascade label guidance segtorch's ICNet trains with (weights 0.4, 0.4, 1).
        return out, [(0.4, self.cff_24.conv_low_cls(up24), 'ce'), (0.4, self.cff_12.conv_low_cls(up12), 'ce'), (1.0, logits4, 'ce')]


class GlobalConvModule(nn.Module):
    def __init__(self, cin, out, k):
        super().__init__()
        self.conv_l1 = nn.Conv2d(cin, out, (k, 1), padding=(k // 2, 0))
        self.conv_l2 = nn.Conv2d(out, out, (1, k), padding=(0, k // 2))
        self.conv_r1 = nn.Conv2d(cin, out, (1, k), padding=(0, k // 2))
        self.conv_r2 = nn.Conv2d(out, out, (k, 1), padding=(k // 2, 0))

    def forward(self, x):
        return self.conv_l2(self.conv_l1(x)) + self.conv_r2(self.conv_r1(x))


class BoundaryRefine(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class GCN(nn.Module):  # gcn.cc: GCM k=15 on each stage, BR modules, 2x transposed convs
    def __init__(self, depth, classes, k=15):
        super().__init__()
        ch = _resnet_channels(depth)
        self.backbone = ResNet(depth, 32)
        for i in range(4):
            self.add_module(f'gcm{i + 1}', GlobalConvModule(ch[3 - i], classes, k))
        for i in range(9):
            self.add_module(f'brm{i + 1}', BoundaryRefine(classes))
        for i in range(5):
            self.add_module(f'deconv{i + 1}', nn.ConvTranspose2d(classes, classes, 4, 2, 1, bias=False))

    def forward(self, x):
        f = self.backbone(x)
        s = [getattr(self, f'brm{i + 1}')(getattr(self, f'gcm{i + 1}')(f[3 - i])) for i in range(4)]
        y = s[0]
        for i in range(1, 4):
            y = getattr(self, f'brm{4 + i}')(getattr(self, f'deconv{i}')(y) + s[i])
        y = self.brm8(self.deconv4(y))
        return self.brm9(self.deconv5(y))


class DFNConvBnRelu(nn.Module):
    def __init__(self, cin, out, k, bn, relu):
        super().__init__()
        self.conv = nn.Conv2d(cin, out, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(out) if bn else None
        self.relu = relu

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class RefineResidual(nn.Module):
    def __init__(self, cin, out, relu):
        super().__init__()
        self.conv_1x1 = nn.Conv2d(cin, out, 1, bias=False)
        self.cbr = DFNConvBnRelu(out, out, 3, True, True)
        self.conv_refine = nn.Conv2d(out, out, 3, padding=1, bias=False)
        self.relu = relu

    def forward(self, x):
        x = self.conv_1x1(x)
        y = x + self.conv_refine(self.cbr(x))
        return F.relu(y) if self.relu else y


class ChannelAttention(nn.Module):
    def __init__(self, cin, out):
        super().__init__()
        self.channel_attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), DFNConvBnRelu(cin, out, 1, False, True),
                                               DFNConvBnRelu(out, out, 1, False, False), nn.Sigmoid())

    def forward(self, low, high):
        return low * self.channel_attention(torch.cat([low, high], 1)) + high


class DFNHead(nn.Module):
    def __init__(self, cin, out):
        super().__init__()
        self.rrb = RefineResidual(cin, out * 9, False)
        self.conv = nn.Conv2d(out * 9, out, 1)

    def forward(self, x):
        return self.conv(self.rrb(x))


class DFN(nn.Module):  # dfn.cc: smooth network (deep supervision) + border network (training only)
    def __init__(self, depth, classes, deep_supervision=True, border_weight=0.1):
        super().__init__()
        ch, w, bw = _resnet_channels(depth), 512, 21
        self.ds, self.bw = deep_supervision, border_weight
        self.backbone = ResNet(depth, 32)
        self.global_context = nn.Sequential(nn.AdaptiveAvgPool2d(1), DFNConvBnRelu(ch[3], w, 1, True, True))
        self.smooth_pre_rrbs = nn.ModuleList([RefineResidual(ch[3 - i], w, True) for i in range(4)])
        self.cabs = nn.ModuleList([ChannelAttention(2 * w, w) for _ in range(4)])
        self.smooth_aft_rrbs = nn.ModuleList([RefineResidual(w, w, True) for _ in range(4)])
        self.smooth_heads = nn.ModuleList([DFNHead(w, classes) for _ in range(4)])
        self.border_pre_rrbs = nn.ModuleList([RefineResidual(ch[i], bw, True) for i in range(4)])
        self.border_aft_rrbs = nn.ModuleDict({str(i): RefineResidual(bw, bw, True) for i in range(1, 4)})
        self.border_head = DFNHead(bw, 1)

    def forward(self, x):
        f = self.backbone(x)
        size = x.shape[-2:]
        higher = self.global_context(f[3]).expand(-1, -1, f[3].shape[2], f[3].shape[3])
        aux = []
        for i in range(4):
            fm = self.smooth_aft_rrbs[i](self.cabs[i](self.smooth_pre_rrbs[i](f[3 - i]), higher))
            if i == 3:
                out = _up_to(self.smooth_heads[3](fm), size, True)
            else:
                if self.ds and self.training:
                    aux.append((1.0, _up_to(self.smooth_heads[i](fm), size, True), 'ce'))
                higher = _up_to(fm, f[2 - i].shape[-2:], True)
        if not self.training:
            return out
        hw = f[0].shape[-2:]
        b = self.border_pre_rrbs[0](f[0])
        for i in range(1, 4):
            b = self.border_aft_rrbs[str(i)](b + _up_to(self.border_pre_rrbs[i](f[i]), hw, True))
        aux.append((self.bw, _up_to(self.border_head(b), size, True), 'border'))
        return out, aux


def border_focal_loss(logits, labels, ignore_index=255, gamma=2.0):
    """dfn.cc BoundaryTargets + BinaryFocalLoss."""
    with torch.no_grad():
        valid = (labels != ignore_index).unsqueeze(1)
        lab = labels.unsqueeze(1).float()
        hi = F.max_pool2d(torch.where(valid, lab, torch.full_like(lab, -1e9)), 3, 1, 1)
        lo = -F.max_pool2d(torch.where(valid, -lab, torch.full_like(lab, -1e9)), 3, 1, 1)
        t = torch.where(valid, (hi != lo).float(), torch.full_like(lab, -1))
    z = logits.float()
    counts = t >= 0
    log_pt = F.logsigmoid(torch.where(t.clamp_min(0) > 0.5, z, -z))
    loss = torch.where(counts, -(1 - log_pt.exp()).pow(gamma) * log_pt, torch.zeros_like(z))
    return loss.sum() / counts.sum().clamp_min(1).to(loss.dtype)


def build(name, classes=21):
    """name: segtorch's 'arch/backbone' (or 'arch' for its default backbone)."""
    arch, _, bb = name.partition('/')
    bb = bb or DEFAULT_BACKBONE.get(arch, '')
    resnet = bb.startswith('resnet')
    vgg = bb in ('vgg16', 'vgg16_bn')
    if arch == 'fcn' and bb in ('resnet50', 'resnet101'):
        return TorchvisionSeg('fcn_' + bb, classes)
    if arch == 'fcn' and resnet:
        return FCNResNet(bb, classes)
    if arch == 'fcn' and vgg:
        return FCNVGG(bb == 'vgg16_bn', classes)
    if arch == 'segnet' and vgg:
        return SegNet(bb == 'vgg16_bn', classes)
    if arch == 'unet':
        return UNet(classes)
    if arch == 'dilated' and vgg:
        return Dilated(bb == 'vgg16_bn', classes)
    if arch == 'deeplabv1' and vgg:
        return DeepLabV1(bb == 'vgg16_bn', classes)
    if arch == 'deeplabv2' and resnet:
        return DeepLabV2(bb, classes)
    if arch == 'deeplabv3' and bb in ('resnet50', 'resnet101'):
        return TorchvisionSeg('deeplabv3_' + bb, classes)
    if arch == 'deeplabv3' and resnet:
        return DeepLabV3(bb, classes)
    if arch == 'deeplabv3' and bb == 'mobilenetv3_large':
        return TorchvisionSeg('deeplabv3_mobilenet_v3_large', classes)
    if arch == 'lraspp' and bb == 'mobilenetv3_large':
        return TorchvisionSeg('lraspp_mobilenet_v3_large', classes)
    if arch == 'deeplabv3plus' and resnet:
        return DeepLabV3Plus(bb, classes)
    if arch == 'pspnet' and resnet:
        return PSPNet(bb, classes)
    if arch == 'upernet' and resnet:
        return UPerNet(bb, classes)
    if arch == 'refinenet' and resnet:
        return RefineNet(bb, classes)
    if arch == 'lwrefinenet' and (resnet or bb == 'mobilenetv2'):
        return LWRefineNet(bb, classes)
    if arch == 'mtrefinenet' and (resnet or bb == 'mobilenetv2'):
        return MTRefineNet(bb, classes)
    if arch == 'icnet' and resnet:
        return ICNet(bb, classes)
    if arch == 'gcn' and resnet:
        return GCN(bb, classes)
    if arch == 'dfn' and resnet:
        return DFN(bb, classes)
    raise SystemExit(f'torch_twins: no twin for {name}')


def check(directory):
    """Compare each twin's state dict (names and shapes) with segtorch's stateDictShapes() dumps in
    DIRECTORY/<arch>_<backbone>.txt ('name 3x3x...' per line); prints one line per model."""
    import os
    ok = True
    for fn in sorted(os.listdir(directory)):
        if not fn.endswith('.txt'):
            continue
        arch, bb = fn[:-4].split('_', 1)
        ours = {}
        for line in open(os.path.join(directory, fn)):
            parts = line.split()
            if parts:
                ours[parts[0]] = parts[1] if len(parts) > 1 else ''
        twin = {k: 'x'.join(map(str, v.shape)) for k, v in build(f'{arch}/{bb}').state_dict().items()}
        missing = [k for k in ours if k not in twin]
        extra = [k for k in twin if k not in ours]
        diff = [k for k in ours if k in twin and ours[k] != twin[k]]
        good = not missing and not extra and not diff
        ok &= good
        print(f'{arch}/{bb}: {"same names and shapes" if good else "DIFFERENT"} ({len(ours)} tensors)'
              + ('' if good else f' missing {missing[:4]} extra {extra[:4]} shape {[(k, ours[k], twin[k]) for k in diff[:4]]}'))
    return ok


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--check':
        sys.exit(0 if check(sys.argv[2]) else 1)
    for n in sys.argv[1:]:
        m = build(n)
        print(n, sum(p.numel() for p in m.parameters()))
