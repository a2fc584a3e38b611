"""Reference values for segtorch's losses, computed with PyTorch (CE) or written out by hand from
the papers' formulas (focal, Dice, OHEM, Lovasz-softmax, berHu). usage: losses_ref.py OUTDIR"""
import json
import sys

import torch
import torch.nn.functional as F

out = sys.argv[1]
torch.manual_seed(0)
N, K, H, W = 2, 4, 6, 7
logits = torch.randn(N, K, H, W) * 2
labels = torch.randint(0, K, (N, H, W))
labels[0, 0, :3] = 255
labels[1, 2, 2] = 255
weights = torch.tensor([0.5, 1.0, 2.0, 1.5])
logits.numpy().astype('float32').tofile(out + '/logits.bin')
labels.numpy().astype('int64').tofile(out + '/labels.bin')
valid = labels != 255
safe = labels.masked_fill(~valid, 0)

ref = {}
ref['ce'] = F.cross_entropy(logits, labels, ignore_index=255).item()
ref['ce_weighted'] = F.cross_entropy(logits, labels, weight=weights, ignore_index=255).item()
ref['ce_smooth'] = F.cross_entropy(logits, labels, ignore_index=255, label_smoothing=0.1).item()
ref['ce_smooth_weighted'] = F.cross_entropy(logits, labels, weight=weights, ignore_index=255, label_smoothing=0.1).item()

# Focal loss by hand: mean over valid pixels of -(1 - p_y)^gamma log p_y
logp = F.log_softmax(logits, 1).gather(1, safe.unsqueeze(1)).squeeze(1)
fl = -(1 - logp.exp()) ** 2 * logp
ref['focal'] = fl[valid].mean().item()
w = weights[safe]
ref['focal_weighted'] = ((fl * w)[valid].sum() / w[valid].sum()).item()

# Dice by hand: 1 - mean_c (2 sum p t + 1) / (sum p + sum t + 1), valid pixels only
p = F.softmax(logits, 1) * valid.unsqueeze(1)
t = F.one_hot(safe, K).permute(0, 3, 1, 2).float() * valid.unsqueeze(1)
dice = (2 * (p * t).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + t.sum((0, 2, 3)) + 1)
ref['dice'] = (1 - dice).mean().item()

# OHEM by hand: keep valid pixels with p_y <= max(threshold, k-th smallest p_y)
py = F.softmax(logits, 1).gather(1, safe.unsqueeze(1)).squeeze(1)
pv = py[valid]
for thr, kept in ((0.7, 10), (0.2, 40), (0.05, 0)):
    kth = pv.sort().values[kept - 1].item() if kept > 0 else -1
    keep = valid & (py <= max(thr, kth))
    ce = F.cross_entropy(logits, labels, ignore_index=255, reduction='none')
    ref['ohem_%g_%d' % (thr, kept)] = ce[keep].mean().item()


# Lovasz-softmax by hand (Berman et al. 2018, Alg. 1), classes present in the labels
def lovasz_grad(gt_sorted):
    gts = gt_sorted.sum()
    inter = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jac = 1.0 - inter / union
    jac[1:] = jac[1:] - jac[:-1].clone()
    return jac


probs = F.softmax(logits, 1).permute(0, 2, 3, 1).reshape(-1, K)[valid.reshape(-1)]
lab = labels.reshape(-1)[valid.reshape(-1)]
losses = []
for c in range(K):
    fg = (lab == c).float()
    if fg.sum() == 0:
        continue
    err = (fg - probs[:, c]).abs()
    err_sorted, perm = torch.sort(err, descending=True)
    losses.append(torch.dot(err_sorted, lovasz_grad(fg[perm])))
ref['lovasz'] = torch.stack(losses).mean().item()

# Depth: valid where target > 0
pred = torch.rand(N, 1, H, W) * 10
target = torch.rand(N, 1, H, W) * 10
target[0, 0, 0, :4] = 0
pred.numpy().astype('float32').tofile(out + '/pred.bin')
target.numpy().astype('float32').tofile(out + '/target.bin')
dv = target > 0
d = (pred - target).abs()[dv]
ref['l1'] = d.mean().item()
c = 0.2 * d.max()
ref['berhu'] = torch.where(d <= c, d, (d * d + c * c) / (2 * c)).mean().item()
print(json.dumps(ref))
