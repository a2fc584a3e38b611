"""Builds a torchvision twin of a segtorch model, randomly initialised with a fixed seed, saves its
state dict, an input and its eval-mode output, so that the TypeScript tests can compare.

usage: /usr/bin/python3 twin.py KIND OUTDIR [H W [H W ...]]
Each size after the first adds an input and its output, x_HxW.bin and y_HxW.bin (the batch-norm
statistics come from the first size).
KIND: fcn_resnet50 | fcn_resnet101 | deeplabv3_resnet50 | deeplabv3_resnet101 |
deeplabv3_mobilenet_v3_large (21 classes, aux heads included) | lraspp_mobilenet_v3_large (21
classes, no aux head; its batch-norm affine parameters randomised too) | resnet18 .. resnet152 |
vgg16 | vgg16_bn | mobilenet_v2 (features only)
Prints a JSON line {params, keys, shape}.
"""
import json
import os
import sys

import torch
import torchvision


def build(kind):
    seg = torchvision.models.segmentation
    if kind.startswith('lraspp_'):
        m = getattr(seg, kind)(weights=None, weights_backbone=None, num_classes=21)
        return m, lambda x: m(x)['out']
    if kind.startswith('fcn_') or kind.startswith('deeplabv3_'):
        fn = getattr(seg, kind)
        try:
            m = fn(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
        except TypeError:  # older torchvision
            m = fn(pretrained=False, pretrained_backbone=False, num_classes=21, aux_loss=True)
        return m, lambda x: m(x)['out']
    if kind.startswith('resnet'):
        m = getattr(torchvision.models, kind)()
        m.fc = torch.nn.Identity()
        m.avgpool = torch.nn.Identity()

        def feats(x):
            x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
            x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
            return x
        return m, feats
    if kind in ('vgg16', 'vgg16_bn', 'mobilenet_v2'):
        m = getattr(torchvision.models, kind)()
        return m.features, None
    raise SystemExit('unknown kind ' + kind)


def main():
    kind, out = sys.argv[1], sys.argv[2]
    h, w = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (64, 96)
    # fp32 results depend on the thread count (reduction order): use segtorch's (TWIN_THREADS).
    if os.environ.get('TWIN_THREADS'):
        torch.set_num_threads(int(os.environ['TWIN_THREADS']))
    torch.manual_seed(0)
    model, head = build(kind)
    if 'mobilenet_v3' in kind:
        # torchvision initialises every BN to weight 1, bias 0: randomise them too (before the
        # statistics, which keep the scale sane), so that a misread affine parameter or eps (1e-3
        # in MobileNetV3) shows in the logits.
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.normal_(0, 0.2)
    # Realistic batch-norm statistics (cumulative averages over a few random batches), so that
    # eval mode is really compared and activations keep a sane scale through the network.
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(2, 3, h, w)
            if head is not None:
                head(x)
            else:
                model(x)
    model.eval()
    torch.save(model.state_dict(), out + '/state.pt')  # an OrderedDict, as users save it
    torch.save(dict(model.state_dict()), out + '/state_plain.pt')
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        y = head(x) if head is not None else model(x)
    x.numpy().astype('float32').tofile(out + '/x.bin')
    y.contiguous().numpy().astype('float32').tofile(out + '/y.bin')
    rest = [int(v) for v in sys.argv[5:]]
    for eh, ew in zip(rest[0::2], rest[1::2]):
        x = torch.randn(1, 3, eh, ew)
        with torch.no_grad():
            y = head(x) if head is not None else model(x)
        x.numpy().astype('float32').tofile('%s/x_%dx%d.bin' % (out, eh, ew))
        y.contiguous().numpy().astype('float32').tofile('%s/y_%dx%d.bin' % (out, eh, ew))
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({'params': params, 'keys': len(model.state_dict()), 'shape': list(y.shape), 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
