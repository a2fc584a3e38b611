"""Why segtorch's bf16 Winograd uses 2 x 2 output tiles, F(2x2, 3x3), and not larger ones (issue 16).

Larger tiles need fewer products per output pixel (F(m x m, 3x3): (m + 2)^2 / m^2 instead of the direct
convolution's 9: 4 for m = 2, 2.78 for m = 3, 2.25 for m = 4), but their transforms multiply by larger
numbers, and bf16 keeps 8 bits of mantissa: the transformed input and weights are rounded to bf16 before
the matrix product (fp32 accumulation, as oneDNN's bf16 GEMM does). This script builds the Toom-Cook
matrices for a tile size and interpolation points, runs the convolution that way on a ReLU'd random
input with He-initialised weights, and prints its error against the float32 convolution of the same
(bf16-valued) input and weights, beside oneDNN's direct bf16 convolution.

usage: python bench/winograd_tiles.py [--channels 256] [--size 64]   (any PyTorch 2.x or 1.13)
"""
import argparse
from fractions import Fraction

import torch
import torch.nn.functional as F


def toom_cook(points):
    """B^T, G, A^T of F(m, 3) for m + 1 finite interpolation points and the point at infinity."""
    p = [Fraction(v) for v in points]
    n = len(p)
    a, m = n + 1, n - 1
    at = [[p[j] ** i if j < n else Fraction(int(i == m - 1)) for j in range(a)] for i in range(m)]
    g = []
    for j in range(n):
        den = Fraction(1)
        for k in range(n):
            if k != j:
                den *= p[j] - p[k]
        g.append([p[j] ** k / den for k in range(3)])
    g.append([Fraction(0), Fraction(0), Fraction(1)])

    def poly_mul(u, v):
        out = [Fraction(0)] * (len(u) + len(v) - 1)
        for i, x in enumerate(u):
            for j, y in enumerate(v):
                out[i + j] += x * y
        return out

    bt = []
    for j in range(n):  # coefficients of prod_{k != j} (x - p_k), lowest power first
        c = [Fraction(1)]
        for k in range(n):
            if k != j:
                c = poly_mul(c, [-p[k], Fraction(1)])
        bt.append(c + [Fraction(0)] * (a - len(c)))
    c = [Fraction(1)]
    for k in range(n):
        c = poly_mul(c, [-p[k], Fraction(1)])
    bt.append(c)
    t = lambda rows: torch.tensor([[float(v) for v in r] for r in rows])
    return t(bt), t(g), t(at), m


def bf16(t):
    return t.to(torch.bfloat16).float()


def winograd(x, w, rows, cols):
    """x [C, H, W], w [K, C, 3, 3] (float32 holding bf16 values); tiles rows x cols from toom_cook()."""
    (bth, gh, ath, mh), (btw, gw, atw, mw) = rows, cols
    c, h, wd = x.shape
    k = w.shape[0]
    th, tw = (h + mh - 1) // mh, (wd + mw - 1) // mw
    xp = F.pad(x, (1, tw * mw + 1 - wd, 1, th * mh + 1 - h))
    tiles = xp.unfold(1, mh + 2, mh).unfold(2, mw + 2, mw)
    v = bf16(torch.einsum('ij,cyxjk,lk->ilyxc', bth, tiles, btw))  # B^T d B, rounded to bf16
    u = bf16(torch.einsum('ij,kcjl,ml->imck', gh, w, gw))  # G g G^T, rounded to bf16
    prod = torch.einsum('ijyxc,ijck->ijyxk', v, u)  # fp32 accumulation
    y = torch.einsum('pi,ijyxk,qj->kyxpq', ath, prod, atw)
    return bf16(y.permute(0, 1, 3, 2, 4).reshape(k, th * mh, tw * mw)[:, :h, :wd])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--channels', type=int, default=256)
    ap.add_argument('--size', type=int, default=64)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    c, s = a.channels, a.size
    x = bf16(torch.relu(torch.randn(c, s, s)))
    w = bf16(torch.randn(c, c, 3, 3) * (2 / (9 * c)) ** 0.5)
    ref = F.conv2d(x[None], w, padding=1)[0]

    def errors(y):
        rms = ((y - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()
        return rms, ((y - ref).abs().max() / ref.abs().max()).item()

    print(f'torch {torch.__version__}, {c} -> {c} channels, {s} x {s}, errors against the float32 convolution')
    print('| tiles | interpolation points | products per output | rms error / rms output | max error / max output |')
    print('|---|---|---|---|---|')
    direct = F.conv2d(x[None].bfloat16(), w.bfloat16(), padding=1)[0].float()
    print('| direct bf16 (oneDNN) | - | 9 | %.2e | %.2e |' % errors(direct))
    f2 = toom_cook(['0', '1', '-1'])
    cases = [('2 x 2', ['0', '1', '-1'], None), ('3 x 2', ['0', '1', '-1', '2'], f2), ('3 x 3', ['0', '1', '-1', '2'], None),
             ('3 x 3', ['0', '1', '-1', '1/2'], None), ('4 x 2', ['0', '1', '-1', '2', '-2'], f2),
             ('4 x 4', ['0', '1', '-1', '2', '-2'], None), ('4 x 4', ['0', '1', '-1', '1/2', '-1/2'], None)]
    for name, pts, other in cases:
        rows = toom_cook(pts)
        cols = other or rows
        per = (rows[3] + 2) * (cols[3] + 2) / (rows[3] * cols[3])
        print('| %s | %s | %.2f | %.2e | %.2e |' % ((name, ', '.join(pts), per) + errors(winograd(x, w, rows, cols))))


if __name__ == '__main__':
    main()
