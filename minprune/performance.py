"""Process-wide speed settings. `import minprune` applies none of them: you opt in.

Both change the whole process (in a notebook: every library in the kernel, not only minprune), so
they are yours to choose:

    import minprune as mp
    mp.performance.tune()       # malloc keeps freed memory; bench/bench_engine.py calls this

* `keep_freed_memory()` (in `tune()`): glibc's malloc serves big blocks with a fresh mmap() and
  trims the top of its heap when much memory there is free, so every training step faults in
  and zeroes its activation-sized arrays again. LeNet-5, batch 128, in a fresh Jupyter kernel
  with NumPy imported first: 2,200-2,900 page faults and 6-8 ms of system time per step; with
  the setting almost none, and the step 37-40 -> 31 ms (best of 40; three kernels each); conv4
  571-604 -> 560-570 ms; lenet_300_100 unchanged (2-core AMD EPYC VM, bench/README.md). On a
  faster machine the same faults were a larger share: LeNet-5 14.2 -> 8.2 ms. It only changes
  *when* freed memory goes back to the OS, never what a program computes. glibc on Linux only.
* `openblas_coretype()`: NumPy's bundled OpenBLAS (0.3.31) picks its matmul kernels from the CPU
  family, and AMD Zen 5 (family 26) is missing from its table (OpenBLAS issue #6029): it falls
  back to the AVX2 "Haswell" kernels, leaving 40-50% of the matmul throughput of a CPU with
  AVX-512 unused (conv4 train 2.4x -> 2.0x torch on a Zen 5 VM; bench/README.md). OpenBLAS
  reads OPENBLAS_CORETYPE once, when NumPy loads, which in a notebook has always happened before
  minprune is imported, so this can only be a suggestion: export it before starting Python.
  `tune()` warns when it would help and is not set.
"""
from __future__ import annotations

import ctypes
import os
import sys
import warnings

M_TRIM_THRESHOLD = -1   # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # the largest glibc accepts on 64-bit: blocks below come from the heap
TRIM_THRESHOLD = 256 << 20  # keep up to this much free memory at the heap's top

# What OpenBLAS itself picks for an AVX-512 + BF16 CPU it knows (Zen 4 and newer Intel).
_AVX512_CORE = "Cooperlake"
_NEEDED_FLAGS = {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512cd", "avx512_bf16"}
_FIRST_UNKNOWN_AMD_FAMILY = 26   # Zen 5: not in the detection table of NumPy's OpenBLAS 0.3.31


def tune() -> dict:
    """Apply the settings that can still take effect in this process; return what was done.

    {"malloc": True if glibc took the thresholds, "openblas_coretype": the value to export
    before starting Python, or None}. Warns (RuntimeWarning) when that value is not None.
    """
    core = openblas_coretype()
    if core is not None:
        warnings.warn(f"OpenBLAS runs its AVX2 kernels on this AVX-512 CPU; for 1.6-1.8x faster "
                      f"matmuls set OPENBLAS_CORETYPE={core} before starting Python "
                      f"(minprune/performance.py)", RuntimeWarning, stacklevel=2)
    return {"malloc": keep_freed_memory(), "openblas_coretype": core}


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds, process-wide; True if glibc accepted both."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter itself runs on
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                             TRIM_THRESHOLD))


def openblas_coretype() -> str | None:
    """The OPENBLAS_CORETYPE worth exporting on this CPU, or None (OpenBLAS's own choice is right,
    or you already chose)."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return None
    return core_type_override(*_cpuinfo())


def core_type_override(vendor: str, family: int, flags: set[str]) -> str | None:
    """The OPENBLAS_CORETYPE for this CPU, or None to leave OpenBLAS's own choice."""
    if vendor == "AuthenticAMD" and family >= _FIRST_UNKNOWN_AMD_FAMILY and _NEEDED_FLAGS <= flags:
        return _AVX512_CORE
    return None


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, int, set[str]]:
    """(vendor, family, flags) of the first CPU listed; empty values where the file is absent."""
    vendor, family, flags = "", -1, set()
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id":
                    vendor = value.strip()
                elif key == "cpu family":
                    family = int(value)
                elif key == "flags":
                    flags = set(value.split())
                    break           # the first CPU is enough
    except (OSError, ValueError):
        pass
    return vendor, family, flags


def openblas_core() -> str | None:
    """The kernel family NumPy's OpenBLAS is running ('Haswell', 'SkylakeX', ...), if it can tell."""
    import glob

    import numpy as np
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_corename64_", "openblas_get_corename"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None
