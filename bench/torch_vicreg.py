"""PyTorch fp32 baseline of the VICReg loss + autograd, for the GPU comparison of the performance issue.

The loss as facebookresearch/vicreg writes it (F.mse_loss, torch.var unbiased, relu hinge, the
off-diagonal squares of the covariance), in the 'paper' preset (variance not halved) and our defaults,
on CUDA in float32 (TF32 off, so that it is the FP32 peak that is compared). Prints one JSON line per
shape: {"n", "d", "ms_median", "ms_runs", "loss", "device"}.

    python3 bench/torch_vicreg.py 2048x8192 256x1024 ...   (run on the GPU machine, in the same call as
    our bench: see README, "On a GPU")
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def off_diagonal(m):
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def vicreg(a, b, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4):
    n, d = a.shape
    invariance = F.mse_loss(a, b)
    ac = a - a.mean(dim=0)
    bc = b - b.mean(dim=0)
    std_a = torch.sqrt(ac.var(dim=0) + eps)
    std_b = torch.sqrt(bc.var(dim=0) + eps)
    variance = torch.mean(F.relu(gamma - std_a)) + torch.mean(F.relu(gamma - std_b))
    cov_a = (ac.T @ ac) / (n - 1)
    cov_b = (bc.T @ bc) / (n - 1)
    covariance = off_diagonal(cov_a).pow(2).sum() / d + off_diagonal(cov_b).pow(2).sum() / d
    return lam * invariance + mu * variance + nu * covariance


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    shapes = [tuple(int(x) for x in s.split('x')) for s in (sys.argv[1:] or ['2048x8192'])]
    for n, d in shapes:
        gen = torch.Generator(device='cpu').manual_seed(1)
        a0 = torch.randn(n, d, generator=gen)
        b0 = a0 + 0.1 * torch.randn(n, d, generator=gen)
        a = a0.to(device).requires_grad_(True)
        b = b0.to(device).requires_grad_(True)
        times = []
        for run in range(6):
            a.grad = None
            b.grad = None
            if device == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            loss = vicreg(a, b)
            loss.backward()
            if device == 'cuda':
                torch.cuda.synchronize()
            if run > 0:   # the first run warms up (kernels, allocator)
                times.append((time.perf_counter() - start) * 1e3)
        times.sort()
        print(json.dumps({'n': n, 'd': d, 'ms_median': times[len(times) // 2], 'ms_runs': times,
                          'loss': float(loss), 'device': torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}))


if __name__ == '__main__':
    main()
