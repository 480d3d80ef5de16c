"""Benchmark of the whole engine against PyTorch CPU: training step and inference.

Not a test: it prints tables of wall times and ratios, measured in one run on one machine.

    python bench/bench_engine.py                      # everything (about two minutes)
    python bench/bench_engine.py --models lenet5      # one model
    python bench/bench_engine.py --no-layers --no-cold-start
    make bench                                        # installs torch==2.13.0 into .venv first

What it measures, all at batch 128, float32, 2 threads (OpenBLAS and torch; the Numba kernels
are serial):

1. Train step (forward + cross-entropy + backward + SGD momentum step) and inference (eval mode,
   no graph) for lenet_300_100, lenet5 and conv4. The PyTorch twin of each model is built from
   minprune's own module tree and gets a copy of minprune's weights, so the shapes and the
   starting point are identical. Each framework times its steps in its own fresh process, the
   processes alternating (see headline), so neither pays for the other's still-spinning threads
   or allocator state; "best" is the minimum over the repetitions, "median" the median.
   ratio = minprune / torch (below 1: minprune is faster). minprune runs with
   `mp.performance.tune()` (and the OPENBLAS_CORETYPE it suggests, if any), as a user who asks
   for speed would; `--untuned` times the defaults of a notebook instead. The OpenBLAS kernel
   family in use is printed in the header.
2. Where a minprune training step spends its time: every Function's forward and backward, the
   optimizer, and the rest (autograd bookkeeping, Tensor wrapping), from timers wrapped around
   them during real steps. It also reports any intermediate that is not float32.
3. Per convolution layer: the time of each kernel (pad, im2col, layout/bias, col2im, ...) inside
   the layer's forward and backward, the remainder (the BLAS matmuls and small NumPy ops), the
   same convolution in torch, and the share of BLAS matmul throughput the convolution reaches:
   achieved GFLOP/s of the whole conv forward (2·MACs / time) over the GFLOP/s of one plain
   `np.matmul` of the same (N·OH·OW × C·kh·kw) × (C·kh·kw × O) product, i.e. t_matmul / t_conv.
4. Cold start: a fresh process with an empty NUMBA_CACHE_DIR doing `import minprune` and one
   lenet5 training step (Numba compiles every kernel it needs), then the same again with the
   cache now warm.

Without torch installed it still runs: the torch columns are left out and a note says so.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAMES = ("lenet_300_100", "lenet5", "conv4")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="BLAS and torch threads (default 2)")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="time budget per measurement pair (default 3 s; at least --reps reps)")
    p.add_argument("--reps", type=int, default=15, help="minimum repetitions per measurement")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: time.perf_counter (default); cpu: time.process_time, which does not "
                   "count time spent preempted, steadier on a loaded machine (use with --threads 1)")
    p.add_argument("--no-torch", action="store_true", help="do not compare against torch")
    p.add_argument("--no-profile", action="store_true", help="skip the per-op profile")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer conv breakdown")
    p.add_argument("--no-cold-start", action="store_true", help="skip the cold/warm start timing")
    p.add_argument("--rounds", type=int, default=2,
                   help="headline: fresh processes per framework, alternating (default 2 each)")
    p.add_argument("--untuned", action="store_true",
                   help="leave out mp.performance.tune() and its OPENBLAS_CORETYPE: a notebook's defaults")
    p.add_argument("--worker", choices=["minprune", "torch"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


# The thread count must be fixed before NumPy loads OpenBLAS, so the imports wait for the arguments.
ARGS = parse_args() if __name__ == "__main__" else parse_args([])
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402

import minprune as mp  # noqa: E402
from minprune import functions as MF  # noqa: E402
from minprune import kernels as MK  # noqa: E402
from minprune.autograd import Context, Function  # noqa: E402
from minprune.nn import functional as mfn  # noqa: E402

# OpenBLAS reads OPENBLAS_CORETYPE when NumPy loads: where minprune.performance suggests one (a CPU
# its detection does not know), start again with it set, so every section and worker runs with it.
if not ARGS.untuned and (_core := mp.performance.openblas_coretype()):
    os.environ["OPENBLAS_CORETYPE"] = _core
    os.execv(sys.executable, [sys.executable, *sys.argv])
if not ARGS.untuned and ARGS.worker != "torch":  # torch runs as torch users run it
    mp.performance.tune()  # the malloc thresholds, in this process and in minprune's workers

torch = None
if not ARGS.no_torch and ARGS.worker != "minprune":
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        torch = None


# --- timing ---------------------------------------------------------------------------------------
CLOCK = time.process_time if ARGS.clock == "cpu" else time.perf_counter


def time_calls(f, warmup=3, reps=None, seconds=None):
    """Call f() `warmup` times untimed, then time it at least `reps` times and for at least
    `seconds`; return (best, median) in ms. One framework at a time: see headline()."""
    reps = ARGS.reps if reps is None else reps
    seconds = ARGS.seconds if seconds is None else seconds
    for _ in range(warmup):
        f()
    times = []
    start = time.perf_counter()
    while (len(times) < reps or time.perf_counter() - start < seconds) and len(times) < 50 * reps:
        t0 = CLOCK()
        f()
        times.append(CLOCK() - t0)
    return min(times) * 1e3, statistics.median(times) * 1e3


def best_ms(f, reps=7, seconds=0.3):
    return time_calls(f, warmup=2, reps=reps, seconds=seconds)[0]


# --- models -----------------------------------------------------------------------------------------
def torch_twin(model):
    """The same network in torch.nn, built from minprune's module tree, with minprune's weights."""
    tnn = torch.nn

    def convert(m):
        if isinstance(m, mp.nn.Sequential):
            return tnn.Sequential(*(convert(c) for _, c in m.named_children()))
        if isinstance(m, mp.nn.Conv2d):
            return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                              bias=m.bias is not None)
        if isinstance(m, mp.nn.Linear):
            return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        if isinstance(m, mp.nn.BatchNorm2d):
            return tnn.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum)
        if isinstance(m, mp.nn.ReLU):
            return tnn.ReLU()
        if isinstance(m, mp.nn.MaxPool2d):
            return tnn.MaxPool2d(m.kernel_size, m.stride)
        if isinstance(m, mp.nn.Flatten):
            return tnn.Flatten()
        raise TypeError(f"no torch twin for {type(m).__name__}")

    class Classifier(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = convert(model.features)
            self.classifier = convert(model.classifier)

        def forward(self, x):
            return self.classifier(self.features(x))

    twin = Classifier()
    state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    missing, unexpected = twin.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing,
                                                                                       unexpected)
    return twin


class Workload:
    """One model in both frameworks, with its batch, its optimizer and its step functions."""

    def __init__(self, name, batch):
        rng = np.random.default_rng(0)
        self.name = name
        self.model = mp.models.get_model(name, seed=0)
        self.x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        self.y = rng.integers(0, 10, batch).astype(np.int64)
        self.opt = mp.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.twin = None
        if torch is not None:
            self.twin = torch_twin(self.model)
            self.tx, self.ty = torch.from_numpy(self.x), torch.from_numpy(self.y)
            self.topt = torch.optim.SGD(self.twin.parameters(), lr=0.01, momentum=0.9)

    def mp_train(self):
        self.model.train()
        logits = self.model(mp.Tensor(self.x))
        loss = mfn.cross_entropy(logits, self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def mp_infer(self):
        self.model.eval()
        with mp.no_grad():
            return self.model(mp.Tensor(self.x))

    def torch_train(self):
        self.twin.train()
        self.topt.zero_grad(set_to_none=True)
        loss = TF.cross_entropy(self.twin(self.tx), self.ty)
        loss.backward()
        self.topt.step()
        return loss

    def torch_infer(self):
        self.twin.eval()
        with torch.no_grad():
            return self.twin(self.tx)

    def check_same(self):
        """Max |difference| of the logits of the two frameworks (same weights, eval mode)."""
        a = self.mp_infer().data
        b = self.torch_infer().numpy()
        return float(np.abs(a - b).max())


# --- 1. the headline table -----------------------------------------------------------------------------
def worker():
    """Run in a fresh process by headline(): time one framework's steps, print one JSON line each."""
    for name in ARGS.models:
        w = Workload(name, ARGS.batch)
        steps = ((("train", w.mp_train), ("inference", w.mp_infer)) if ARGS.worker == "minprune"
                 else (("train", w.torch_train), ("inference", w.torch_infer)))
        for mode, f in steps:
            best, median = time_calls(f)
            print(json.dumps({"model": name, "mode": mode, "best": best, "median": median}), flush=True)


def run_workers(framework):
    """{(model, mode): (best, median)} from one fresh worker process of `framework`."""
    cmd = [sys.executable, __file__, "--worker", framework, "--models", *ARGS.models,
           "--batch", str(ARGS.batch), "--threads", str(ARGS.threads), "--seconds", str(ARGS.seconds),
           "--reps", str(ARGS.reps), "--clock", ARGS.clock] + (["--untuned"] if ARGS.untuned else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {(r["model"], r["mode"]): (r["best"], r["median"]) for r in rows}


def headline(workloads):
    """Each framework times its steps in its own fresh process, the processes alternating.

    Why processes and not one process: frameworks in one process disturb each other. Their worker
    threads keep spinning after a call (OpenBLAS's, torch's OpenMP pool) and take a core from
    the other framework's next call, and torch's allocations changed how glibc's malloc served
    minprune's arrays (2x on LeNet-5 without mp.performance.tune()). Alone in a process,
    each runs as its users run it. The logits of both are compared here first (same weights).
    """
    print("== Train step and inference, batch %d, float32, %d threads ==" % (ARGS.batch, ARGS.threads))
    print(f"(each framework in its own process, {ARGS.rounds} alternating rounds; best of all "
          f"repetitions, median of the rounds' medians)")
    frameworks = ["minprune"] + (["torch"] if torch is not None else [])
    if torch is None:
        print("(torch is not installed: minprune times only, no ratios. `make bench` installs it.)")
    for w in workloads:
        if torch is not None:
            diff = w.check_same()
            assert diff < 1e-3, f"{w.name}: minprune and torch twins disagree by {diff}"
    runs = defaultdict(list)  # (framework, model, mode) -> [(best, median) per round]
    for _ in range(ARGS.rounds):
        for fw in frameworks:
            for key, value in run_workers(fw).items():
                runs[(fw, *key)].append(value)

    def summary(fw, name, mode):
        vals = runs[(fw, name, mode)]
        return min(v[0] for v in vals), statistics.median(v[1] for v in vals)

    if torch is None:
        print(f"{'model':<15} {'mode':<10} {'minprune best':>14} {'median':>9}")
    else:
        print(f"{'model':<15} {'mode':<10} {'minprune ms':>12} {'torch ms':>9} {'ratio':>7}"
              f"   {'(median: mp':>12} {'torch':>7} {'ratio)':>7}")
    rows = []
    for name in ARGS.models:
        for mode in ("train", "inference"):
            bm, mm = summary("minprune", name, mode)
            if torch is None:
                print(f"{name:<15} {mode:<10} {bm:>14.2f} {mm:>9.2f}", flush=True)
                rows.append((name, mode, bm, None))
                continue
            bt, mt = summary("torch", name, mode)
            print(f"{name:<15} {mode:<10} {bm:>12.2f} {bt:>9.2f} {bm / bt:>7.2f}"
                  f"   {mm:>12.2f} {mt:>7.2f} {mm / mt:>7.2f}", flush=True)
            rows.append((name, mode, bm, bt))
    return rows


# --- 2. per-op profile of a training step --------------------------------------------------------------
class Profiler:
    """Timers around every Function's forward/backward, every kernel and the optimizer step.

    Functions are shared by all layers, so a conv's time is keyed by its weight shape; kernels
    called inside a conv are charged to that conv ("the current layer"). A kernel that calls
    other kernels (im2col_padded calls im2col) is timed as one: only the outermost call counts.
    """

    def __init__(self):
        self.op = defaultdict(float)  # (op, "fwd"/"bwd") -> seconds
        self.kernel = defaultdict(float)  # (layer, phase, kernel) -> seconds
        self.layer = defaultdict(float)  # (layer, phase) -> seconds
        self.not_f32 = set()
        self.current = None
        self.in_kernel = False
        self._undo = []

    def _patch(self, owner, name, wrapper):
        original = owner.__dict__[name]
        self._undo.append((owner, name, original))
        setattr(owner, name, wrapper(original))

    def __enter__(self):
        for cls in {c for c in vars(MF).values()
                    if isinstance(c, type) and issubclass(c, Function) and c is not Function}:
            self._patch(cls, "forward", lambda sm, cls=cls: staticmethod(self._timed_fwd(cls, sm)))
            self._patch(cls, "backward", lambda sm, cls=cls: staticmethod(self._timed_bwd(cls, sm)))
        for name in MK.__all__:
            self._patch(MK, name, lambda f, name=name: self._timed_kernel(name, f))
        self._patch(mp.optim.Optimizer, "step", lambda f: self._timed_plain("optimizer step", f))
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)

    def _check(self, label, arrays):
        for a in arrays if isinstance(arrays, tuple) else (arrays,):
            if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.dtype != np.float32:
                self.not_f32.add(f"{label}: {a.dtype}")

    def _timed_fwd(self, cls, sm):
        f = sm.__func__ if isinstance(sm, staticmethod) else sm

        def forward(ctx, *args):
            layer = None
            if cls in (MF.Conv2d, MF.Linear):
                layer = f"{cls.__name__}{tuple(args[1].shape)}"
                ctx._bench_layer = layer
            self.current = (layer, "fwd")
            t0 = CLOCK()
            out = f(ctx, *args)
            dt = CLOCK() - t0
            self.current = None
            self.op[cls.__name__, "fwd"] += dt
            if layer:
                self.layer[layer, "fwd"] += dt
            self._check(f"{cls.__name__}.forward", out)
            return out
        return forward

    def _timed_bwd(self, cls, sm):
        f = sm.__func__ if isinstance(sm, staticmethod) else sm

        def backward(ctx, g):
            layer = getattr(ctx, "_bench_layer", None)
            self.current = (layer, "bwd")
            t0 = CLOCK()
            out = f(ctx, g)
            dt = CLOCK() - t0
            self.current = None
            self.op[cls.__name__, "bwd"] += dt
            if layer:
                self.layer[layer, "bwd"] += dt
            self._check(f"{cls.__name__}.backward", out)
            return out
        return backward

    def _timed_kernel(self, name, f):
        def kernel(*args, **kwargs):
            if self.in_kernel:
                return f(*args, **kwargs)
            self.in_kernel = True
            t0 = CLOCK()
            try:
                out = f(*args, **kwargs)
            finally:
                self.in_kernel = False
            if self.current is not None and self.current[0] is not None:
                self.kernel[self.current + (name,)] += CLOCK() - t0
            return out
        return kernel

    def _timed_plain(self, label, f):
        def wrapped(*args, **kwargs):
            t0 = CLOCK()
            out = f(*args, **kwargs)
            self.op[label, ""] += CLOCK() - t0
            return out
        return wrapped


def profile_step(w, steps=10):
    """Best-of-`steps` total, and per-op time per step averaged over the steps."""
    for _ in range(3):
        w.mp_train()
    with Profiler() as prof:
        totals = []
        for _ in range(steps):
            t0 = CLOCK()
            w.mp_train()
            totals.append(CLOCK() - t0)
    total = sum(totals)
    return prof, total / steps, total


def print_profile(w, prof, per_step, total):
    print(f"\n-- {w.name}: where a training step goes (mean of the profiled steps, "
          f"{per_step * 1e3:.2f} ms/step with timers on) --")
    ops = sorted({k[0] for k in prof.op}, key=lambda o: -(prof.op[o, "fwd"] + prof.op[o, "bwd"]
                                                          + prof.op[o, ""]))
    accounted = 0.0
    for o in ops:
        fwd, bwd, plain = prof.op[o, "fwd"], prof.op[o, "bwd"], prof.op[o, ""]
        accounted += fwd + bwd + plain
        share = (fwd + bwd + plain) / total * 100
        if plain:
            print(f"   {o:<22} {plain / total * per_step * 1e3:>7.2f} ms  {share:5.1f}%")
        else:
            print(f"   {o:<22} fwd {fwd / total * per_step * 1e3:>6.2f}  bwd "
                  f"{bwd / total * per_step * 1e3:>6.2f} ms  {share:5.1f}%")
    rest = total - accounted
    print(f"   {'rest (autograd, Tensor)':<22} {rest / total * per_step * 1e3:>7.2f} ms  "
          f"{rest / total * 100:5.1f}%")
    print("   intermediates not float32: " + (", ".join(sorted(prof.not_f32)) or "none"))


# --- 3. per conv layer -----------------------------------------------------------------------------------
def conv_layers(model, x):
    """(module, input shape) of every Conv2d, from one eval forward with hooks."""
    found = []
    handles = [m.register_forward_hook(lambda mod, inp, out, m=m: found.append((m, inp[0].shape)))
               for m in model.modules() if isinstance(m, mp.nn.Conv2d)]
    with mp.no_grad():
        model.eval()
        model(mp.Tensor(x))
    for h in handles:
        h.remove()
    return found


def layer_breakdown(w, prof, steps):
    """Per conv layer: kernel times inside the real training step, and standalone conv vs matmul."""
    rng = np.random.default_rng(1)
    convs = conv_layers(w.model, w.x)
    print(f"\n-- {w.name}: conv layers (ms per training step; 'matmul+' = layer time minus its "
          f"kernels: the BLAS calls plus small NumPy ops) --")
    header = (f"   {'layer':<28} {'phase':<4} {'total':>6}  kernels")
    print(header)
    for m, shape in convs:
        layer = f"Conv2d{tuple(m.weight.shape)}"
        for phase in ("fwd", "bwd"):
            tot = prof.layer[layer, phase] / steps * 1e3
            parts = {k[2]: v / steps * 1e3 for k, v in prof.kernel.items() if k[:2] == (layer, phase)}
            rest = tot - sum(parts.values())
            text = "  ".join(f"{k} {v:.2f}" for k, v in parts.items())
            print(f"   {layer:<28} {phase:<4} {tot:>6.2f}  {text}  matmul+ {rest:.2f}")

    print(f"\n-- {w.name}: conv forward vs one plain np.matmul of the same shape "
          "(standalone, best of N) --")
    cols = ["layer", "in shape", "(M x K) x (K x O)", "matmul", "conv fwd", "share",
            "GFLOP/s", "bwd", "bwd mm"]
    fmt = "   {:<20} {:<16} {:<24} {:>7} {:>8} {:>6} {:>8} {:>7} {:>7}"
    if torch is not None:
        cols += ["torch fwd", "share", "torch bwd"]
        fmt += " {:>9} {:>6} {:>9}"
    print(fmt.format(*cols))
    for m, shape in convs:
        n, c, h, wd = shape
        o, _, kh, kw = m.weight.shape
        (sh, sw), (ph, pw) = m.stride, m.padding
        oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
        M, K = n * oh * ow, c * kh * kw
        x = rng.standard_normal(shape).astype(np.float32)
        wt = m.weight.data
        b = m.bias.data if m.bias is not None else None
        a = rng.standard_normal((M, K)).astype(np.float32)
        w2t = np.ascontiguousarray(wt.reshape(o, K).T)
        out_mm = np.empty((M, o), np.float32)
        t_mm = best_ms(lambda: np.matmul(a, w2t, out=out_mm))
        g = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
        g2d = rng.standard_normal((M, o)).astype(np.float32)
        w2d = np.ascontiguousarray(wt.reshape(o, K))
        # backward's two matmuls (dW = g2dᵀ·cols, dcols = g2d·W2d; the second only if dx is needed)
        needs_dx = c != 1 or m is not convs[0][0]
        t_bmm = best_ms(lambda: (g2d.T @ a, g2d @ w2d if needs_dx else None))

        def conv_fwd():
            ctx = Context()
            ctx.needs_grad = (needs_dx, True, b is not None)
            out = MF.Conv2d.forward(ctx, x, wt, b, m.stride, m.padding)
            return ctx, out

        ctx0, _ = conv_fwd()
        t_fwd = best_ms(conv_fwd)
        t_bwd = best_ms(lambda: MF.Conv2d.backward(ctx0, g))
        flops = 2.0 * M * K * o
        row = [f"Conv2d{tuple(wt.shape)}", "x".join(map(str, shape)), f"({M}x{K})x({K}x{o})",
               f"{t_mm:.2f}", f"{t_fwd:.2f}", f"{t_mm / t_fwd:.0%}", f"{flops / t_fwd / 1e6:.1f}",
               f"{t_bwd:.2f}", f"{t_bmm:.2f}"]
        if torch is not None:
            tx = torch.from_numpy(x).requires_grad_(needs_dx)
            tw = torch.from_numpy(wt.copy()).requires_grad_(True)
            tb = torch.from_numpy(b.copy()).requires_grad_(True) if b is not None else None
            tg = torch.from_numpy(g)
            with torch.no_grad():
                t_tf = best_ms(lambda: TF.conv2d(tx, tw, tb, m.stride, m.padding))
            out_t = TF.conv2d(tx, tw, tb, m.stride, m.padding)
            inputs = [t for t in (tx, tw, tb) if t is not None and t.requires_grad]
            t_tb = best_ms(lambda: torch.autograd.grad(out_t, inputs, tg, retain_graph=True))
            row += [f"{t_tf:.2f}", f"{t_mm / t_tf:.0%}", f"{t_tb:.2f}"]
        print(fmt.format(*row), flush=True)


# --- 4. cold start ------------------------------------------------------------------------------------
_COLD = """
import time
t0 = time.perf_counter()
import numpy as np
import minprune as mp
t1 = time.perf_counter()
rng = np.random.default_rng(0)
model = mp.models.lenet5(seed=0)
opt = mp.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
y = rng.integers(0, 10, BATCH)
loss = mp.nn.functional.cross_entropy(model(mp.Tensor(x)), y)
opt.zero_grad()
loss.backward()
opt.step()
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def cold_start():
    print("\n== Start-up: `import minprune` + one lenet5 training step, in a fresh process ==")
    code = _COLD.replace("BATCH", str(ARGS.batch))
    results = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
        env.pop("NUMBA_DISABLE_JIT", None)
        for label in ("cold (empty Numba cache)", "warm (cache hit)"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                 capture_output=True, text=True, cwd=ROOT).stdout.split()
            wall = time.perf_counter() - t0
            imp, step = float(out[0]), float(out[1])
            results[label] = wall
            print(f"   {label:<26} import {imp:5.2f} s  first step {step:5.2f} s  "
                  f"process wall {wall:5.2f} s", flush=True)
    return results


def main():
    if ARGS.worker:
        if ARGS.worker == "torch":
            torch.set_num_threads(ARGS.threads)
        return worker()
    import platform
    tv = f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else "torch missing"
    if torch is not None:
        torch.set_num_threads(ARGS.threads)
        tv = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    print(f"numpy {np.__version__}, {tv}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
          f"clock: {ARGS.clock}, load average {os.getloadavg()[0]:.1f}")
    print(f"OpenBLAS kernels: {mp.performance.openblas_core()} "
          f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}), "
          f"mp.performance.tune(): {'no (--untuned)' if ARGS.untuned else 'yes'}\n")
    workloads = [Workload(name, ARGS.batch) for name in ARGS.models]
    headline(workloads)
    if not ARGS.no_profile or not ARGS.no_layers:
        print("\n== Inside a minprune training step ==")
        for w in workloads:
            steps = 10
            prof, per_step, total = profile_step(w, steps)
            if not ARGS.no_profile:
                print_profile(w, prof, per_step, total)
            if not ARGS.no_layers and any(isinstance(m, mp.nn.Conv2d) for m in w.model.modules()):
                layer_breakdown(w, prof, steps)
    if not ARGS.no_cold_start:
        cold_start()


if __name__ == "__main__":
    main()
