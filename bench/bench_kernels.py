"""Benchmark of minprune.kernels against its NumPy twins and PyTorch.

Not a test: it prints a table of best-of-N wall times (``time.perf_counter``)
for every kernel on realistic shapes (LeNet-5 and a small VGG-style conv
block, batch 128), then the cold vs cached Numba compile time.

    python bench/bench_kernels.py                  # float32
    python bench/bench_kernels.py --dtype float64
    python bench/bench_kernels.py --no-compile     # skip the compile timing
    python bench/bench_kernels.py --torch-threads 1

Columns: numba ms (minprune.kernels, serial), numpy ms (minprune.kernels_ref),
ratio = numpy / numba (how many times faster the kernel is than its twin),
torch ms (the closest PyTorch CPU op, with torch's default thread count;
blank if there is none or torch is not installed). The torch ops do not
always produce the same layout: ``unfold`` returns (N, C*kh*kw, L) instead
of im2col's (N*L, C*kh*kw), and ``fold`` takes that layout as input.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import minprune.kernels as nb  # noqa: E402
import minprune.kernels_ref as ref  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the table just loses its torch column
    torch = None


def best_ms(fn, min_reps=5, min_seconds=0.3):
    """Best wall time of fn() in ms, after one warm-up call (which may compile)."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


# (label, input shape of im2col = already padded, kernel size)
CONV_CASES = [
    ("LeNet conv1", (128, 1, 32, 32), 5),
    ("LeNet conv2", (128, 6, 14, 14), 5),
    ("conv4a", (128, 32, 30, 30), 3),
    ("conv4b", (128, 64, 16, 16), 3),
]
# (label, (N, O, OH, OW)) conv outputs for the layout kernels
LAYOUT_CASES = [
    ("LeNet conv1", (128, 6, 28, 28)),
    ("LeNet conv2", (128, 16, 10, 10)),
    ("conv4a", (128, 32, 28, 28)),
    ("conv4b", (128, 64, 14, 14)),
]
# (label, unpadded input shape, padding)
PAD_CASES = [
    ("LeNet conv1", (128, 1, 28, 28), 2),
    ("conv4a", (128, 32, 28, 28), 1),
    ("conv4b", (128, 64, 14, 14), 1),
]
POOL_CASES = [
    ("LeNet pool1", (128, 6, 28, 28)),
    ("pool 2x2", (128, 32, 28, 28)),
]
NM_CASES = [("conv4b weight", (64, 576)), ("VGG weight", (512, 4608))]
BN_CASES = [("conv4 block 1", (128, 32, 28, 28)), ("conv4 block 2", (128, 64, 14, 14))]


def shape_str(shape, extra=""):
    return "x".join(str(s) for s in shape) + extra


def run_table(dtype):
    rng = np.random.default_rng(0)
    rows = []

    def add(kernel, shape, f_nb, f_ref, f_torch=None):
        t_nb = best_ms(f_nb)
        t_ref = best_ms(f_ref)
        t_torch = best_ms(f_torch) if (f_torch is not None and torch is not None) else None
        rows.append((kernel, shape, t_nb, t_ref, t_torch))
        torch_col = f"{t_torch:9.2f}" if t_torch is not None else ""
        print(
            f"{kernel:<20} {shape:<26} {t_nb:9.2f} {t_ref:9.2f} {t_ref / t_nb:7.1f}x {torch_col}", flush=True
        )

    print(f"{'kernel':<20} {'shape':<26} {'numba ms':>9} {'numpy ms':>9} {'ratio':>8} {'torch ms':>9}")
    print("-" * 86)

    for _, shape, p in PAD_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        tx = torch.from_numpy(x) if torch else None
        add(
            "pad2d",
            shape_str(shape, f" p={p}"),
            lambda x=x, p=p: nb.pad2d(x, p, p),
            lambda x=x, p=p: ref.pad2d(x, p, p),
            lambda tx=tx, p=p: F.pad(tx, (p, p, p, p)),
        )

    for _, shape, k in CONV_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        N, C, Hp, Wp = shape
        L = (Hp - k + 1) * (Wp - k + 1)
        cols = rng.standard_normal((N * L, C * k * k)).astype(dtype)
        tx = torch.from_numpy(x) if torch else None
        tcols = torch.from_numpy(cols.reshape(N, L, C * k * k).transpose(0, 2, 1).copy()) if torch else None
        label = shape_str(shape, f" k={k}")
        add(
            "im2col",
            label,
            lambda x=x, k=k: nb.im2col(x, k, k, 1, 1),
            lambda x=x, k=k: ref.im2col(x, k, k, 1, 1),
            lambda tx=tx, k=k: F.unfold(tx, k),
        )
        add(
            "col2im",
            label,
            lambda c=cols, s=shape, k=k: nb.col2im(c, *s, k, k, 1, 1),
            lambda c=cols, s=shape, k=k: ref.col2im(c, *s, k, k, 1, 1),
            lambda t=tcols, s=shape, k=k: F.fold(t, s[2:], k),
        )

    for _, (N, O, OH, OW) in LAYOUT_CASES:
        out2d = rng.standard_normal((N * OH * OW, O)).astype(dtype)
        bias = rng.standard_normal(O).astype(dtype)
        g = rng.standard_normal((N, O, OH, OW)).astype(dtype)
        t2, tb, tg = (torch.from_numpy(a) for a in (out2d, bias, g)) if torch else (None,) * 3
        label = shape_str((N, O, OH, OW))
        add(
            "rows_to_nchw_bias",
            label,
            lambda a=out2d, b=bias, s=(N, OH, OW): nb.rows_to_nchw_bias(a, b, *s),
            lambda a=out2d, b=bias, s=(N, OH, OW): ref.rows_to_nchw_bias(a, b, *s),
            lambda a=t2, b=tb, s=(N, OH, OW, O): (a.view(*s) + b).permute(0, 3, 1, 2).contiguous(),
        )
        add(
            "nchw_to_rows",
            label,
            lambda g=g: nb.nchw_to_rows(g),
            lambda g=g: ref.nchw_to_rows(g),
            lambda t=tg: t.permute(0, 2, 3, 1).contiguous(),
        )

    for _, shape in POOL_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        H, W = shape[2:]
        out, am = nb.maxpool2d_forward(x, 2, 2, 2, 2)
        g = rng.standard_normal(out.shape).astype(dtype)
        label = shape_str(shape, " 2x2/2")
        tx = tg = tidx = None
        if torch:
            tx, tg = torch.from_numpy(x), torch.from_numpy(g)
            _, tidx = F.max_pool2d(tx, 2, 2, return_indices=True)
        add(
            "maxpool2d_forward",
            label,
            lambda x=x: nb.maxpool2d_forward(x, 2, 2, 2, 2),
            lambda x=x: ref.maxpool2d_forward(x, 2, 2, 2, 2),
            lambda tx=tx: F.max_pool2d(tx, 2, 2, return_indices=True),
        )
        add(
            "maxpool2d_backward",
            label,
            lambda g=g, am=am, H=H, W=W: nb.maxpool2d_backward(g, am, H, W),
            lambda g=g, am=am, H=H, W=W: ref.maxpool2d_backward(g, am, H, W),
            lambda tg=tg, tx=tx, ti=tidx: torch.ops.aten.max_pool2d_with_indices_backward(
                tg, tx, [2, 2], [2, 2], [0, 0], [1, 1], False, ti
            ),
        )
        add(
            "avgpool2d_forward",
            label,
            lambda x=x: nb.avgpool2d_forward(x, 2, 2, 2, 2),
            lambda x=x: ref.avgpool2d_forward(x, 2, 2, 2, 2),
            lambda tx=tx: F.avg_pool2d(tx, 2, 2),
        )
        add(
            "avgpool2d_backward",
            label,
            lambda g=g, H=H, W=W: nb.avgpool2d_backward(g, H, W, 2, 2, 2, 2),
            lambda g=g, H=H, W=W: ref.avgpool2d_backward(g, H, W, 2, 2, 2, 2),
            lambda tg=tg, tx=tx: torch.ops.aten.avg_pool2d_backward(
                tg, tx, [2, 2], [2, 2], [0, 0], False, True, None
            ),
        )

    for _, shape in BN_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        C = shape[1]
        mean, inv_std = x.mean(axis=(0, 2, 3)), np.ones(C, dtype)
        gamma, beta = np.ones(C, dtype), np.zeros(C, dtype)
        relu_out = np.maximum(x, 0)
        label = shape_str(shape)
        tx = tg = tw = tb = to = None
        if torch:
            tx, tg, to = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(relu_out)
            tw, tb = torch.from_numpy(gamma), torch.from_numpy(beta)
        add(
            "channel_stats",
            label,
            lambda x=x: nb.channel_stats(x),
            lambda x=x: ref.channel_stats(x),
            lambda tx=tx: torch.var_mean(tx, dim=(0, 2, 3), unbiased=False),
        )
        add(
            "batchnorm_forward",
            label,
            lambda a=(x, mean, inv_std, gamma, beta): nb.batchnorm_forward(*a),
            lambda a=(x, mean, inv_std, gamma, beta): ref.batchnorm_forward(*a),
            lambda tx=tx, tw=tw, tb=tb: F.batch_norm(tx, None, None, tw, tb, training=True),
        )
        add(
            "batchnorm_backward",
            label,
            lambda a=(g, x, mean, inv_std, gamma, True): nb.batchnorm_backward(*a),
            lambda a=(g, x, mean, inv_std, gamma, True): ref.batchnorm_backward(*a),
        )
        add(
            "relu_backward",
            label,
            lambda g=g, o=relu_out: nb.relu_backward(g, o),
            lambda g=g, o=relu_out: ref.relu_backward(g, o),
            lambda tg=tg, to=to: torch.ops.aten.threshold_backward(tg, to, 0),
        )

    for _, (R, K) in NM_CASES:
        s = np.abs(rng.standard_normal((R, K))).astype(dtype)
        ts = torch.from_numpy(s) if torch else None

        def torch_nm(ts=ts, R=R, K=K):
            # top-2 of each group of 4 via topk + scatter (tie order unspecified)
            groups = ts.view(R, K // 4, 4)
            mask = torch.zeros(groups.shape, dtype=torch.bool)
            return mask.scatter_(2, groups.topk(2, dim=2).indices, True).view(R, K)

        add(
            "nm_mask 2:4",
            shape_str((R, K)),
            lambda s=s: nb.nm_mask(s, 2, 4),
            lambda s=s: ref.nm_mask(s, 2, 4),
            torch_nm,
        )
    return rows


# Compiles every kernel for one dtype, so the compile timing covers them all.
_FIRST_CALLS = """
import time
t0 = time.perf_counter()
import numpy as np
import minprune.kernels as k
t1 = time.perf_counter()
for dt in DTYPES:
    x = np.ones((2, 3, 8, 8), dt)
    xp = k.pad2d(x, 1, 1)
    c = k.im2col(xp, 3, 3, 1, 1)
    k.col2im(c, 2, 3, 10, 10, 3, 3, 1, 1)
    o = k.rows_to_nchw_bias(np.ones((128, 40), dt), np.ones(40, dt), 2, 8, 8)
    k.nchw_to_rows(o)
    out, am = k.maxpool2d_forward(x, 2, 2, 2, 2)
    k.maxpool2d_backward(out, am, 8, 8)
    k.avgpool2d_backward(k.avgpool2d_forward(x, 2, 2, 2, 2), 8, 8, 2, 2, 2, 2)
    k.nm_mask(np.ones((4, 8), dt), 2, 4)
    m, v = k.channel_stats(x)
    y = k.batchnorm_forward(x, m, v, m, v)
    k.batchnorm_backward(y, x, m, v, m, True)
    k.relu_backward(y, x)
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def compile_timing(dtypes):
    """Run the first calls twice in fresh processes sharing an empty Numba cache dir.

    The first process compiles and writes the cache, the second only loads
    it. A private NUMBA_CACHE_DIR keeps this from touching the real cache.
    """
    code = _FIRST_CALLS.replace("DTYPES", "(" + ", ".join(f"np.{d}" for d in dtypes) + ",)")
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
        env.pop("NUMBA_DISABLE_JIT", None)
        for label in ("cold (compile + write cache)", "warm (load cache)"):
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
            ).stdout.split()
            print(f"{label:<30} import {float(out[0]):6.2f} s   first calls {float(out[1]):6.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time measurement")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch.set_num_threads(N) first; 1 compares like with like (the kernels are serial) "
        "and is far steadier on a busy 2-core machine (default: torch's own choice)",
    )
    args = parser.parse_args()
    if torch and args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    dtype = np.dtype(args.dtype)
    threads = f", torch {torch.__version__} with {torch.get_num_threads()} threads" if torch else ""
    print(f"dtype {dtype}, numpy {np.__version__}{threads}, {os.cpu_count()} CPUs\n")
    run_table(dtype)
    if not args.no_compile:
        print("\nNumba compile time, every kernel, first call in a fresh process:")
        compile_timing([args.dtype])


if __name__ == "__main__":
    main()
