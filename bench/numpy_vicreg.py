"""float32 NumPy/OpenBLAS baseline of the VICReg loss and both gradients: the standard d x d form, as the
performance issue's CPU target states it ("a float32 OpenBLAS CPU implementation of the standard d x d
form"). Forward and backward are written by hand (no autograd in NumPy), with the same definitions and
'paper' preset defaults as the engine (lambda = mu = 25, nu = 1, gamma = 1, eps = 1e-4, k = 1):

    loss = lam * mean((A - B)^2) + mu * k * (mean relu(gamma - std_A) + mean relu(gamma - std_B))
           + nu * (sum_{l != m} C_A[l, m]^2 + sum_{l != m} C_B[l, m]^2) / d
    dloss/dZ = 2 lam (Z - O) / (n d) - mu k [std < gamma] Zc / (d (n-1) std) + 4 nu Zc Coff / (d (n-1))

Each run starts from float32 host arrays and ends with the loss and both gradients as float32 arrays.
Before timing, each shape checks itself against a float64 evaluation of the same formulas (relative
error of the loss and of both gradients' norms below 1e-4), so a wrong baseline cannot post a time.
Prints one JSON line per shape: {"n", "d", "ms_median", "ms_runs", "loss", "threads", "blas"}.

    python3 bench/numpy_vicreg.py 256x1024 1024x1024 128x8192 [--runs 5]
    python3 bench/numpy_vicreg.py --serve
    (npm run bench -- --openblas: one run at a time on request, alternated with ours; reads lines from
    stdin: 'NxD' makes that shape's inputs, checks itself and warms up, then answers {"ready", "blas",
    "threads"}; 'run' times one run and answers {"ms", "loss"}; end of input ends it)
    python3 bench/numpy_vicreg.py --peak
    (the CPU's float32 ceiling: a 2048^3 OpenBLAS sgemm's GFLOP/s; npm run bench -- --kernels reports the
    kernels against it)
    python3 bench/numpy_vicreg.py --inputs A.npy B.npy
    (no timing: prints {"loss", "gradA", "gradB"} for A and B, so test/bench-reference.test.ts can hold
    this baseline to the test suite's float64 reference)
"""
import json
import sys
import time

import numpy as np

LAM, MU, NU, GAMMA, EPS, K = 25.0, 25.0, 1.0, 1.0, 1e-4, 1.0


def view_terms(z, dtype):
    n, d = z.shape
    zc = z - z.mean(axis=0, dtype=dtype)
    cov = (zc.T @ zc) / dtype(n - 1)
    var = np.diagonal(cov).copy()
    std = np.sqrt(var + dtype(EPS))
    hinge = np.maximum(dtype(GAMMA) - std, dtype(0))
    np.fill_diagonal(cov, 0)   # cov is now Coff
    return zc, std, hinge, cov


def vicreg(a, b, dtype=np.float32):
    n, d = a.shape
    diff = a - b
    invariance = np.mean(diff * diff, dtype=dtype)
    grads, variance, covariance = [], dtype(0), dtype(0)
    views = [view_terms(a, dtype), view_terms(b, dtype)]
    for sign, (zc, std, hinge, coff) in zip((1, -1), views):
        variance += np.mean(hinge, dtype=dtype)
        covariance += np.sum(coff * coff, dtype=dtype) / dtype(d)
        var_coef = np.where(std < GAMMA, dtype(-MU * K / (d * (n - 1))) / std, dtype(0))
        grads.append(dtype(sign * 2 * LAM / (n * d)) * diff + var_coef * zc + dtype(4 * NU / (d * (n - 1))) * (zc @ coff))
    loss = LAM * invariance + MU * K * variance + NU * covariance
    return loss, grads[0], grads[1]


def check(a, b):
    loss, ga, gb = vicreg(a, b)
    loss64, ga64, gb64 = vicreg(a.astype(np.float64), b.astype(np.float64), np.float64)
    errors = [abs(loss - loss64) / abs(loss64),
              np.linalg.norm(ga - ga64) / np.linalg.norm(ga64),
              np.linalg.norm(gb - gb64) / np.linalg.norm(gb64)]
    if max(errors) > 1e-4:
        raise SystemExit(f'numpy_vicreg: float32 disagrees with float64 at {a.shape}: {errors}')


def main(argv):
    runs = 5
    if '--runs' in argv:
        at = argv.index('--runs')
        runs = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2:]
    if argv == ['--peak']:
        # The CPU's practical float32 ceiling: a large OpenBLAS sgemm, median of 5 after a warm-up.
        x = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
        x @ x
        times = []
        for _ in range(5):
            start = time.perf_counter()
            x @ x
            times.append(time.perf_counter() - start)
        blas = np.show_config(mode='dicts')['Build Dependencies']['blas']
        print(json.dumps({'sgemm_gflops': 2 * 2048 ** 3 / float(np.median(times)) / 1e9, 'blas': f"{blas.get('name')} {blas.get('version')}"}))
        return
    if argv[:1] == ['--inputs'] and len(argv) == 3:
        a, b = (np.load(path).astype(np.float32) for path in argv[1:])
        loss, ga, gb = vicreg(a, b)
        print(json.dumps({'loss': float(loss), 'gradA': ga.ravel().tolist(), 'gradB': gb.ravel().tolist()}))
        return
    if not argv:
        raise SystemExit(__doc__)
    if argv == ['--serve']:
        serve()
        return
    blas = blas_info()
    for shape in argv:
        n, d = parse_shape(shape)
        a, b = prepared_inputs(n, d)
        times = []
        for _ in range(runs):
            ms, loss = timed_run(a, b)
            times.append(ms)
        print(json.dumps({'n': n, 'd': d, 'ms_median': float(np.median(times)), 'ms_runs': times, 'loss': float(loss), **blas}), flush=True)


def blas_info():
    blas = np.show_config(mode='dicts')['Build Dependencies']['blas']
    return {'threads': blas.get('openblas configuration', ''), 'blas': f"{blas.get('name')} {blas.get('version')}"}


def parse_shape(shape):
    n, d = (int(x) for x in shape.lower().split('x'))
    return n, d


def prepared_inputs(n, d):
    """The shape's inputs (seeded by the shape), checked against float64, after one warm-up run."""
    rng = np.random.default_rng(n * 7919 + d)
    a = rng.standard_normal((n, d), dtype=np.float32)
    b = (a + 0.3 * rng.standard_normal((n, d), dtype=np.float32)).astype(np.float32)
    check(a, b)
    vicreg(a, b)   # warm-up
    return a, b


def timed_run(a, b):
    start = time.perf_counter()
    loss, _, _ = vicreg(a, b)
    return (time.perf_counter() - start) * 1000, loss


def serve():
    blas = blas_info()
    a = b = None
    for line in sys.stdin:
        command = line.strip()
        if command == 'run':
            if a is None:
                raise SystemExit("numpy_vicreg: 'run' before a shape")
            ms, loss = timed_run(a, b)
            print(json.dumps({'ms': ms, 'loss': float(loss)}), flush=True)
        elif command:
            n, d = parse_shape(command)
            a = b = None   # free the last shape's first
            a, b = prepared_inputs(n, d)
            print(json.dumps({'ready': f'{n}x{d}', **blas}), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
