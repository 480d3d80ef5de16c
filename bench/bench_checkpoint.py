"""Checkpoint sizes: how much smaller `mp.save` makes a pruned model's file, and what it costs.

Not a test: for each model it saves the dense model, then the same weights pruned (global
magnitude at 50/90/95/99% unstructured; 2:4; filter / neuron 50%, layerwise) and prints
- `previous`: the file the previous format wrote (format 1: full weights + a bool mask per
  masked parameter, `np.savez_compressed`), in bytes and as a fraction of its dense file;
- `format 2`: the file `mp.save` writes now (packed mask + kept values), likewise;
- `CSR`: the alternative layout format 2 was measured against: the mask as CSR (int32 row
  pointers, uint16 / int32 column indices per kept weight) + the same kept values, as a fraction
  of format 2's dense file;
- save / load times of both (best of N; load into an existing model, so building it is not timed).
`nonzero` is 1 / `compression_ratio`: the nonzero share of all parameters (biases, BatchNorm and
layers a pattern leaves dense included).
The dense file of each row is the same model before pruning, in the same format.

    python bench/bench_checkpoint.py
    python bench/bench_checkpoint.py --models conv4 --repeats 10
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import minprune as mp  # noqa: E402, I001  (thread settings must come before NumPy)
import numpy as np  # noqa: E402

MODELS = ["lenet_300_100", "lenet5", "conv4", "resnet_tiny"]
UNSTRUCTURED = [0.5, 0.9, 0.95, 0.99]


def save_previous(model, path):
    """What `mp.save` did before format 2: the whole state_dict, compressed, written atomically
    (temporary file, fsync, rename: part of both save times)."""
    arrays = dict(model.state_dict())
    arrays["__arch__"] = np.array(json.dumps({"arch": model.arch, "kwargs": model.arch_kwargs}))
    return mp.files.atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def save_csr(model, path):
    """Format 2 with each mask as CSR over (out, in·kh·kw) rows instead of packed bits."""
    params = dict(model.named_parameters())
    arrays = {}
    for name, array in mp.nn.serialize._compact_state(model).items():
        param = name.removesuffix(".mask_bits")
        if param == name:  # not a mask: stored as in format 2
            arrays[name] = array
            continue
        mask = params[param].mask
        rows = mask.reshape(len(mask), -1) if mask.ndim > 1 else mask[None]
        index = np.uint16 if rows.shape[1] < 2**16 else np.int32
        arrays[param + ".indptr"] = np.append(0, np.cumsum(rows.sum(1))).astype(np.int32)
        arrays[param + ".indices"] = np.nonzero(rows)[1].astype(index)
    with open(path, "wb") as f:
        mp.nn.serialize._write_npz(f, arrays)  # as format 2 writes: only the layout differs
    return path


def patterns(name):
    """(label, how to prune a fresh model in place) for each row after the dense one."""
    rows = [(f"unstructured {s:.0%}", lambda m, s=s: mp.prune.prune(m, s)) for s in UNSTRUCTURED]
    odd = [n for n, m in mp.models.get_model(name).named_modules()  # 2:4 needs in·kh·kw = 4·k
           if isinstance(m, (mp.nn.Conv2d, mp.nn.Linear)) and m.weight.data[0].size % 4]
    rows.append((f"2:4 ({len(odd)} layers dense)", lambda m: mp.prune.prune(m, granularity="2:4",
                                                                            exclude=odd)))
    unit = "neuron" if name == "lenet_300_100" else "filter"
    rows.append((f"{unit} 50% layerwise", lambda m: mp.prune.prune(
        m, 0.5, granularity=unit, scope="layerwise")))
    return rows


def best_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def measure(model, folder, repeats):
    """(previous, format 2, CSR bytes, previous save/load ms, format 2 save/load ms)."""
    old, new = folder / "previous.npz", folder / "format2.npz"
    into = mp.models.get_model(model.arch, **model.arch_kwargs)
    save_old = best_ms(lambda: save_previous(model, old), repeats)
    save_new = best_ms(lambda: mp.save(model, new), repeats)
    load_old = best_ms(lambda: mp.load(old, into), repeats)
    load_new = best_ms(lambda: mp.load(new, into), repeats)
    csr = save_csr(model, folder / "csr.npz").stat().st_size
    return old.stat().st_size, new.stat().st_size, csr, save_old, load_old, save_new, load_new


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--repeats", type=int, default=5, help="best of N saves and loads (default 5)")
    args = p.parse_args()
    print(f"numpy {np.__version__}, randomly initialised weights (seed 0), best of {args.repeats}\n")
    print(f"{'model':<14} {'pruning':<24} {'nonzero':>7} {'previous B':>11} {'of dense':>8} "
          f"{'format 2 B':>11} {'of dense':>8} {'CSR':>6} {'save ms':>15} {'load ms':>15}")
    print(f"{'':<96} {'prev / fmt 2':>15} {'prev / fmt 2':>15}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            dense = None
            for label, prune in [("dense", None)] + patterns(name):
                model = mp.models.get_model(name, seed=0)
                if prune is not None:
                    prune(model)
                kept = 1 / mp.prune.compression_ratio(model)
                old, new, csr, *ms = measure(model, Path(tmp), args.repeats)
                dense = dense or (old, new)
                print(f"{name:<14} {label:<24} {kept:>7.1%} {old:>11,} {old / dense[0]:>8.1%} "
                      f"{new:>11,} {new / dense[1]:>8.1%} {csr / dense[1]:>6.1%} "
                      f"{ms[0]:>7.1f} /{ms[2]:>6.1f} {ms[1]:>7.1f} /{ms[3]:>6.1f}", flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
