"""Per-layer benchmark of minprune's sparse kernels against dense BLAS, SciPy CSR and PyTorch CSR.

Not a test: it prints a table of best-of-N wall times (``time.perf_counter``, warm-up calls
first, so Numba's compile time is excluded) for the forward of single layers:

* LeNet-300-100's first Linear, 784 → 300, and a 1024 × 1024 Linear;
* conv4's 32 → 32 (28 × 28 input) and 64 → 64 (14 × 14 input) 3 × 3 convolutions, padding 1;

at batch 1 and 128, unstructured magnitude pruning at 50 ... 99% and 2:4, for

* **dense**: minprune's dense path, as the layers do it (``x @ W.T + b``; Conv2d's
  pad + im2col + one BLAS matmul + layout), NumPy's BLAS with ``--threads`` threads;
* **minprune**: ``sparse_kernels.csr_linear`` / ``csr_conv2d`` (``nm_linear`` / ``nm_conv2d``
  for 2:4), serial;
* **scipy**: ``scipy.sparse.csr_matrix @`` (serial); for a convolution, minprune's pad + im2col,
  then the CSR product and the layout to NCHW;
* **torch**: ``to_sparse_csr()`` weight, ``(W @ x.T).T + b``; for a convolution ``F.unfold``,
  the CSR product and the layout; ``torch.set_num_threads(--threads)``.

Each framework runs in its own fresh process (``--worker NAME``): thread pools and allocators
of one framework change the timings of another (bench/README.md, Engine section). The parent
collects their JSON and prints one table with the theoretical speedup 1 / (1 − s), the
break-even sparsity (sparse = dense) per layer and batch, and the issue's targets.

    python bench/bench_sparse.py                 # 7 sparsities + 2:4, batch 1 and 128
    python bench/bench_sparse.py --quick         # 4 sparsities + 2:4, shorter timing
    python bench/bench_sparse.py --threads 1     # dense BLAS and torch on one thread
    python bench/bench_sparse.py --only minprune,dense --save results.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import minprune  # noqa: E402, F401, I001  (thread settings must come before NumPy)
import numpy as np  # noqa: E402

# (name, kind, shape): Linear (out, in); Conv2d (C_in, C_out, H = W), 3×3, stride 1, padding 1.
LAYERS = [
    ("fc 784->300", "linear", (300, 784)),
    ("fc 1024->1024", "linear", (1024, 1024)),
    ("conv 32->32 28x28", "conv", (32, 32, 28)),
    ("conv 64->64 14x14", "conv", (64, 64, 14)),
]
BATCHES = (1, 128)
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
QUICK_SPARSITIES = (0.7, 0.8, 0.9, 0.95)
FRAMEWORKS = ("dense", "minprune", "scipy", "torch")


# ---------------------------------------------------------------------------
# Problems: the same weights and inputs in every process (seeded)
# ---------------------------------------------------------------------------


def weight_2d(kind, shape):
    """The dense weight as (out, in) (a conv's (O, C·3·3)), float32, He-like scale."""
    rng = np.random.default_rng(0)
    if kind == "linear":
        out, inp = shape
    else:
        c, out, _ = shape
        inp = c * 9
    return (rng.standard_normal((out, inp)) * np.sqrt(2.0 / inp)).astype(np.float32)


def pruned(w, sparsity):
    """Magnitude pruning: exactly round(s·n) smallest |w| set to 0, or the 2:4 pattern."""
    from minprune.kernels import nm_mask
    if sparsity == "2:4":
        return w * nm_mask(np.abs(w), 2, 4)
    k = round(sparsity * w.size)
    out = w.copy().reshape(-1)
    if k:
        out[np.argpartition(np.abs(out), k - 1)[:k]] = 0
    return out.reshape(w.shape)


def inputs(kind, shape, batch):
    rng = np.random.default_rng(1)
    if kind == "linear":
        return rng.standard_normal((batch, shape[1])).astype(np.float32)
    c, _, hw = shape
    return rng.standard_normal((batch, c, hw, hw)).astype(np.float32)


def bias(out):
    return np.random.default_rng(2).standard_normal(out).astype(np.float32)


# ---------------------------------------------------------------------------
# One framework's forward of one layer: returns a zero-argument callable
# ---------------------------------------------------------------------------


def make_dense(kind, w, x, b, sparsity):
    if kind == "linear":
        def linear():
            out = x @ w.T  # as minprune.functions.Linear
            out += b
            return out
        return linear
    from minprune.autograd import Context
    from minprune.functions import Conv2d
    w4 = np.ascontiguousarray(w.reshape(w.shape[0], -1, 3, 3))
    return lambda: Conv2d.forward(Context(), x, w4, b, (1, 1), (1, 1))


def make_minprune(kind, w, x, b, sparsity):
    from minprune import sparse_kernels as S
    nm = sparsity == "2:4"
    a = S.to_nm(w, 2, 4) if nm else S.to_csr(w)
    if kind == "linear":
        fn = S.nm_linear if nm else S.csr_linear
        return lambda: fn(x, a, bias=b)
    fn = S.nm_conv2d if nm else S.csr_conv2d
    return lambda: fn(x, a, 3, 3, 1, 1, 1, 1, bias=b)


def make_scipy(kind, w, x, b, sparsity):
    import scipy.sparse
    a = scipy.sparse.csr_matrix(w)
    if kind == "linear":
        return lambda: (a @ x.T).T + b
    from minprune import kernels as K

    def conv():
        n, _, h, wd = x.shape
        cols = K.im2col(K.pad2d(x, 1, 1), 3, 3, 1, 1)  # (N·H·W, C·9)
        out = (a @ cols.T).reshape(-1, n, h, wd)  # (O, N, H, W)
        return out.transpose(1, 0, 2, 3) + b[:, None, None]
    return conv


def make_torch(kind, w, x, b, sparsity):
    import torch
    import torch.nn.functional as F
    a = torch.from_numpy(w).to_sparse_csr()
    xt, bt = torch.from_numpy(x), torch.from_numpy(b)
    if kind == "linear":
        return lambda: (a @ xt.T).T + bt
    n, c, h, wd = x.shape

    def conv():
        cols = F.unfold(xt, 3, padding=1)  # (N, C·9, H·W)
        cols = cols.transpose(0, 1).reshape(c * 9, n * h * wd)
        out = (a @ cols).reshape(-1, n, h, wd)
        return out.permute(1, 0, 2, 3) + bt[:, None, None]
    return conv


MAKERS = {"dense": make_dense, "minprune": make_minprune, "scipy": make_scipy, "torch": make_torch}


def check(kind, w, x, b, fn):
    """The forward must agree with a dense float64 reference (so nothing fast is wrong)."""
    got = np.asarray(fn())
    if kind == "linear":
        want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    else:
        from minprune import kernels_ref
        cols = kernels_ref.im2col(kernels_ref.pad2d(x.astype(np.float64), 1, 1), 3, 3, 1, 1)
        n, _, h, wd = x.shape
        want = (cols @ w.T.astype(np.float64) + b).reshape(n, h, wd, -1).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def best_ms(fn, min_reps, min_seconds):
    """(best, median) wall time of fn() in ms, after two warm-up calls (which may compile)."""
    fn()
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3, float(np.median(times)) * 1e3


def worker(name, sparsities, threads, min_reps, min_seconds):
    """Time every case for one framework; print the results as one JSON line."""
    if name == "torch":
        import torch
        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
    results = []
    for label, kind, shape in LAYERS:
        w_dense = weight_2d(kind, shape)
        for batch in BATCHES:
            x = inputs(kind, shape, batch)
            b = bias(w_dense.shape[0])
            cases = ["dense"] if name == "dense" else [*sparsities, "2:4"]
            for s in cases:
                w = w_dense if s == "dense" else pruned(w_dense, s)
                fn = MAKERS[name](kind, w, x, b, s)
                check(kind, w, x, b, fn)
                best, median = best_ms(fn, min_reps, min_seconds)
                results.append({"layer": label, "batch": batch, "sparsity": s,
                                "best_ms": best, "median_ms": median})
    versions = {"numpy": np.__version__}
    if name == "torch":
        import torch
        versions["torch"] = torch.__version__
    if name == "scipy":
        import scipy
        versions["scipy"] = scipy.__version__
    if name == "dense":
        from minprune.performance import openblas_core
        versions["openblas"] = openblas_core()
    print(json.dumps({"framework": name, "versions": versions, "results": results}))


# ---------------------------------------------------------------------------
# Parent: run the workers, print the table
# ---------------------------------------------------------------------------


def run_worker(name, args):
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--threads", str(args.threads), "--min-reps", str(args.min_reps),
           "--min-seconds", str(args.min_seconds)]
    if args.quick:
        cmd.append("--quick")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def key(r):
    return r["layer"], r["batch"], r["sparsity"]


def fmt(v, spec=".3f"):
    return "" if v is None else format(v, spec)


def print_table(by_fw, sparsities):
    """One row per (layer, batch, sparsity); ratios against dense and against SciPy / torch."""
    t = {fw: {key(r): r["best_ms"] for r in data["results"]} for fw, data in by_fw.items()}
    head = (f"{'layer':<19}{'batch':>6}{'sparsity':>9}{'theory':>8}{'dense ms':>10}"
            f"{'minprune':>10}{'speedup':>8}{'scipy ms':>10}{'torch ms':>10}"
            f"{'mp/scipy':>9}{'mp/torch':>9}")
    print(head)
    print("-" * len(head))
    rows = []
    for label, _, _ in LAYERS:
        for batch in BATCHES:
            dense = t.get("dense", {}).get((label, batch, "dense"))
            for s in [*sparsities, "2:4"]:
                mp = t.get("minprune", {}).get((label, batch, s))
                sc = t.get("scipy", {}).get((label, batch, s))
                to = t.get("torch", {}).get((label, batch, s))
                theory = 2.0 if s == "2:4" else 1 / (1 - s)
                speed = dense / mp if dense and mp else None
                rows.append({"layer": label, "batch": batch, "sparsity": s, "dense": dense,
                             "minprune": mp, "scipy": sc, "torch": to, "speedup": speed})
                name = s if s == "2:4" else f"{s:.0%}"
                print(f"{label:<19}{batch:>6}{name:>9}{theory:>7.1f}x{fmt(dense):>10}{fmt(mp):>10}"
                      f"{fmt(speed, '.2f') + 'x' if speed else '':>8}{fmt(sc):>10}{fmt(to):>10}"
                      f"{fmt(mp / sc if mp and sc else None, '.2f'):>9}"
                      f"{fmt(mp / to if mp and to else None, '.2f'):>9}")
        print()
    return rows


def break_even(rows, sparsities):
    """Per (layer, batch): the lowest measured sparsity from which minprune ≤ dense throughout."""
    print("break-even (minprune sparse as fast as dense, unstructured):")
    for label, _, _ in LAYERS:
        for batch in BATCHES:
            speed = {r["sparsity"]: r["speedup"] for r in rows
                     if r["layer"] == label and r["batch"] == batch and r["sparsity"] != "2:4"}
            if any(v is None for v in speed.values()):
                continue
            wins = [s for s in sparsities if all(speed[u] >= 1 for u in sparsities if u >= s)]
            if not wins:
                text = f"not reached up to {sparsities[-1]:.0%}"
            elif wins[0] == sparsities[0]:
                text = f"at or below {sparsities[0]:.0%}"
            else:
                below = sparsities[sparsities.index(wins[0]) - 1]
                text = f"between {below:.0%} and {wins[0]:.0%}"
            print(f"  {label:<19} batch {batch:>3}: {text}")


def targets(rows):
    """The issue's targets for a sparse Linear, met or missed and by how much."""
    print("\nissue targets (Linear layers):")
    lin = [r for r in rows if r["layer"].startswith("fc") and r["sparsity"] != "2:4"]

    def at(label, batch, s):
        return next(r for r in lin if (r["layer"], r["batch"], r["sparsity"]) == (label, batch, s))

    def verdict(ok):
        return "met" if ok else "MISSED"

    for label in sorted({r["layer"] for r in lin}):
        for batch in BATCHES:
            sps = sorted({r["sparsity"] for r in lin})
            if 0.7 in sps:
                r = at(label, batch, 0.7)
                if r["speedup"]:
                    print(f"  {label} b{batch}: break even at <= 70%: speedup at 70% "
                          f"{r['speedup']:.2f}x -> {verdict(r['speedup'] >= 1)}")
            if 0.95 in sps:
                r = at(label, batch, 0.95)
                goal = 5.0 if batch == 1 else 3.0
                if r["speedup"]:
                    print(f"  {label} b{batch}: >= {goal:.0f}x at 95%: {r['speedup']:.2f}x -> "
                          f"{verdict(r['speedup'] >= goal)}")
            high = [r for r in lin if r["layer"] == label and r["batch"] == batch
                    and r["sparsity"] >= 0.8]
            sc = [r["minprune"] / r["scipy"] for r in high if r["minprune"] and r["scipy"]]
            to = [r["minprune"] / r["torch"] for r in high if r["minprune"] and r["torch"]]
            if sc:
                print(f"  {label} b{batch}: at least as fast as SciPy at >= 80%: worst "
                      f"minprune/scipy {max(sc):.2f} -> {verdict(max(sc) <= 1)}")
            if to:
                print(f"  {label} b{batch}: within 1.5x of torch at >= 80%: worst "
                      f"minprune/torch {max(to):.2f} -> {verdict(max(to) <= 1.5)}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 sparsities, shorter timing")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for dense BLAS and torch (default: all CPUs)")
    p.add_argument("--only", default=",".join(FRAMEWORKS), help="frameworks to run, comma-separated")
    p.add_argument("--min-reps", type=int, default=None)
    p.add_argument("--min-seconds", type=float, default=None)
    p.add_argument("--save", help="also write the raw results to this JSON file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    sparsities = QUICK_SPARSITIES if args.quick else SPARSITIES
    if args.min_reps is None:
        args.min_reps = 3 if args.quick else 7
    if args.min_seconds is None:
        args.min_seconds = 0.1 if args.quick else 0.3
    if args.worker:
        return worker(args.worker, sparsities, args.threads, args.min_reps, args.min_seconds)

    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(FRAMEWORKS)
    if unknown:
        p.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(FRAMEWORKS)}")
    t0 = time.time()
    load0 = os.getloadavg()[0]
    by_fw = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        by_fw[name] = run_worker(name, args)
    versions = {k: v for data in by_fw.values() for k, v in data["versions"].items()}
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"dense BLAS and torch threads {args.threads}, minprune and scipy serial; "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"best of >= {args.min_reps} calls / {args.min_seconds} s per case, float32; "
          f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end\n")
    rows = print_table(by_fw, sparsities)
    if "dense" in by_fw and "minprune" in by_fw:
        break_even(rows, sparsities)
        targets(rows)
    print(f"\n({time.time() - t0:.0f} s)")
    if args.save:
        Path(args.save).write_text(json.dumps(by_fw, indent=1))


if __name__ == "__main__":
    main()
