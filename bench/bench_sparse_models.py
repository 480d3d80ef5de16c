"""Whole-model benchmark of `mp.prune.sparsify`: the masked model's dense forward against its
sparse inference copy, end to end.

Not a test: it prints best-of-N wall times (``time.perf_counter``, one warm-up call first, so
Numba's compile time is excluded) of the eval-mode forward of LeNet-300-100, LeNet-5 and conv4 at
batch 1 and 128, pruned by layerwise magnitude (unstructured, every Conv2d/Linear at the same
sparsity) or to 2:4, for

* **dense**: the masked model as it trains (BLAS, im2col), ``--threads`` BLAS threads;
  for 2:4, a layer whose fan-in (in·kh·kw) is not a multiple of 4 stays unpruned (LeNet-5's
  two convolutions: 25 and 150);
* **sparsify**: ``mp.prune.sparsify(model, shape, batch_size=batch)`` — each layer in whichever
  of dense / CSR / N:M it measured fastest at that batch (its choices are printed);
* **forced**: ``sparsify(..., formats=("csr",))`` — CSR in every layer, no timing (for 2:4,
  ``formats=("nm",)``: N:M wherever the weight is 2:4, dense elsewhere).

All three are minprune in one process (the per-layer bench, bench_sparse.py, compares other
frameworks and runs each in its own process): same allocator and BLAS threads for every column;
the sparse kernels are serial whatever ``--threads`` says. The weights are untrained (speed does
not depend on accuracy); theoretical = dense multiply-adds / remaining ones.

    python bench/bench_sparse_models.py
    python bench/bench_sparse_models.py --models lenet5 --sparsities 0.9 --batches 128
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {"lenet_300_100": (1, 28, 28), "lenet5": (1, 28, 28), "conv4": (1, 28, 28)}
SPARSITIES = ("0.5", "0.7", "0.8", "0.9", "0.95", "0.98", "0.99", "2:4")
# the end-to-end targets: (model, sparsity, batch) -> speedup of the sparse copy
TARGETS = {("lenet_300_100", "0.95", 128): 3.0, ("conv4", "0.9", 128): 1.5}


def best_ms(model, x, repeats):
    """The timer `sparsify` itself chooses formats with: best of `repeats` after one warm-up."""
    from minprune.prune.sparse import _best_ms
    return _best_ms(model, x, repeats)


def pruned_model(name, sparsity):
    import minprune as mp
    model = mp.models.get_model(name, seed=0)
    if sparsity == "2:4":  # a layer whose fan-in is not a multiple of 4 stays dense (LeNet-5's first)
        odd = [n for n, m in mp.prune.prunable_layers(model).items() if m.weight.data[0].size % 4]
        mp.prune.prune(model, criterion="magnitude", granularity="2:4", exclude=odd)
    else:
        mp.prune.prune(model, float(sparsity), criterion="magnitude", scope="layerwise")
    return model.eval()


def formats_used(fast):
    """'csr 3, dense 1' — how many layers the copy runs in each format."""
    counts = {}
    for row in fast.report:
        counts[row["format"]] = counts.get(row["format"], 0) + 1
    return ", ".join(f"{f} {n}" for f, n in sorted(counts.items()))


def run(name, sparsity, batch, repeats):
    import numpy as np

    import minprune as mp
    shape = SHAPES[name]
    model = pruned_model(name, sparsity)
    x = mp.Tensor(np.random.default_rng(1).standard_normal((batch, *shape)).astype(np.float32))
    auto = mp.prune.sparsify(model, shape, batch_size=batch, repeats=repeats)
    forced = mp.prune.sparsify(model, shape, formats=("nm",) if sparsity == "2:4" else ("csr",))
    with mp.no_grad():  # every copy computes what the masked model computes
        ref = model(x).data
        for copy in (auto, forced):
            np.testing.assert_allclose(copy(x).data, ref, rtol=1e-4, atol=1e-4)
    dense, t_auto, t_forced = (best_ms(m, x, repeats) for m in (model, auto, forced))
    return {"model": name, "sparsity": sparsity, "batch": batch,
            "theoretical": mp.prune.theoretical_speedup(model, shape),
            "dense": dense, "sparsify": t_auto, "csr": t_forced, "chosen": formats_used(auto)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(SHAPES))
    p.add_argument("--sparsities", default=",".join(SPARSITIES))
    p.add_argument("--batches", default="1,128")
    p.add_argument("--repeats", type=int, default=20, help="best of N forwards (default 20)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="BLAS threads")
    args = p.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy starts its BLAS
    import numpy as np
    print(f"numpy {np.__version__}, {args.threads} BLAS threads, sparse kernels serial, "
          f"best of {args.repeats}, layerwise magnitude pruning (untrained weights)\n")
    print(f"{'model':14} {'sparsity':>8} {'batch':>5} {'theoretical':>11} {'dense ms':>9} "
          f"{'sparsify ms':>11} {'speedup':>7} {'forced ms':>9} {'speedup':>7}  chosen")
    t0, checked = time.time(), []
    for name in args.models.split(","):
        for sparsity in args.sparsities.split(","):
            for batch in map(int, args.batches.split(",")):
                r = run(name, sparsity, batch, args.repeats)
                gain = r["dense"] / r["sparsify"]
                print(f"{name:14} {sparsity:>8} {batch:>5} {r['theoretical']:10.2f}x "
                      f"{r['dense']:9.3f} {r['sparsify']:11.3f} {gain:6.2f}x {r['csr']:9.3f} "
                      f"{r['dense'] / r['csr']:6.2f}x  {r['chosen']}", flush=True)
                goal = TARGETS.get((name, sparsity, batch))
                if goal is not None:
                    checked.append((name, sparsity, batch, goal, gain))
    print(f"\n({time.time() - t0:.0f} s)")
    for name, sparsity, batch, goal, gain in checked:
        verdict = "met" if gain >= goal else f"MISSED by {goal / gain:.2f}x"
        print(f"target {name} {sparsity} batch {batch}: >= {goal}x, measured {gain:.2f}x: {verdict}")


if __name__ == "__main__":
    main()
