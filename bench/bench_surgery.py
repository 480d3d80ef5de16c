"""Theoretical vs measured speedup: what pruning buys at inference once the pruned units are cut out.

Not a test: it prints, for each model and pruning pattern (layerwise magnitude pruning, the
final classifier left dense so all 10 logits survive),
- parameters before and after `mp.prune.compact`,
- `theoretical_speedup`: dense multiply-adds / multiply-adds left (counts every zero as free),
- `measured_speedup`: wall time of the dense model's inference forward / the compacted model's
  (batch 128, eval mode, best of N, both measured in this run on this machine).
Unstructured zeros sit inside filters, so compaction removes (almost) nothing and the measured
speedup stays ~1× whatever the theory says; filter/neuron pruning gives real but smaller-than-
theoretical gains, because the layers that shrink least (and the im2col / layout work, which
does not shrink with the multiply-adds) keep their cost. On the residual networks, filter
pruning cuts every channel group a residual addition couples as one (`dependency_graph`), and
whole-layer pruning ("layer": the branches of identity blocks, global by branch weight norm)
replaces removed blocks by their shortcut.

    python bench/bench_surgery.py
    python bench/bench_surgery.py --models conv4 --repeats 20
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import minprune as mp  # noqa: E402, I001  (thread settings must come before NumPy)
import numpy as np  # noqa: E402

PATTERNS = [("structured", 0.5), ("structured", 0.75), ("structured", 0.9), ("unstructured", 0.9)]
LAST = {"lenet_300_100": "classifier.5", "lenet5": "classifier.5", "conv4": "classifier.3",
        "resnet_tiny": "fc", "resnet14": "fc"}
EXTRA = {"resnet_tiny": [("layer", 1.0)], "resnet14": [("layer", 0.5), ("layer", 1.0)]}


def pruned(name, kind, sparsity):
    """(the model pruned in this pattern, the granularity's name)."""
    model = mp.models.get_model(name, seed=0)
    if kind == "layer":
        mp.prune.prune(model, sparsity, granularity="layer")
        return model, "layer"
    granularity = kind if kind == "unstructured" else (
        "neuron" if name == "lenet_300_100" else "filter")
    mp.prune.prune(model, sparsity, criterion="magnitude", granularity=granularity,
                   scope="layerwise", exclude=LAST[name])
    return model, granularity


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(LAST), choices=list(LAST))
    p.add_argument("--repeats", type=int, default=10, help="best of N forward passes (default 10)")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    print(f"numpy {np.__version__}, OpenBLAS kernels {mp.performance.openblas_core()}, batch {args.batch}, "
          f"best of {args.repeats}\n")
    print(f"{'model':<14} {'pruning':<22} {'params':>9} {'compact':>9} {'theoretical':>12} "
          f"{'measured':>9}")
    t0 = time.perf_counter()
    for name in args.models:
        for kind, sparsity in PATTERNS + EXTRA.get(name, []):
            model, granularity = pruned(name, kind, sparsity)
            small = mp.prune.compact(model, (1, 28, 28))
            theory = mp.prune.theoretical_speedup(model, (1, 28, 28))
            measured = mp.prune.measured_speedup(model, (1, 28, 28), compacted=small,
                                                 batch_size=args.batch, repeats=args.repeats)
            print(f"{name:<14} {granularity + f' {sparsity:.0%}':<22} {mp.prune.count_params(model):>9,} "
                  f"{mp.prune.count_params(small):>9,} {theory:>11.2f}x {measured:>8.2f}x", flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
