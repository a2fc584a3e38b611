"""Builds a torchvision twin of a segtorch model, randomly initialised with a fixed seed, saves its
state dict, an input and its eval-mode output, so that the TypeScript tests can compare.

usage: /usr/bin/python3 twin.py KIND OUTDIR [H W [H2 W2 ...]]
Batch-norm statistics are gathered at H x W (at most 64 x 96, to keep it cheap); the model is then
evaluated at every size given (x_HxW.bin, y_HxW.bin; the first also as x.bin, y.bin).
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
    sizes = [(int(a), int(b)) for a, b in zip(sys.argv[3::2], sys.argv[4::2])] or [(64, 96)]
    h, w = min(sizes[0][0], 64), min(sizes[0][1], 96)
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
    for i, (h, w) in enumerate(sizes):
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            y = head(x) if head is not None else model(x)
        for name in ([''] if i == 0 else []) + ['_%dx%d' % (h, w)]:
            x.numpy().astype('float32').tofile(out + '/x%s.bin' % name)
            y.contiguous().numpy().astype('float32').tofile(out + '/y%s.bin' % name)
        if i == 0:
            shape = list(y.shape)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({'params': params, 'keys': len(model.state_dict()), 'shape': shape, 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
