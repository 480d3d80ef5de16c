"""Let OpenBLAS use its AVX-512 matmul kernels on CPUs it does not recognise yet.

Every Linear and Conv2d in minprune ends in one float32 BLAS matmul, so the BLAS kernel OpenBLAS
picks sets most of the engine's speed. NumPy's bundled OpenBLAS (0.3.31) picks it from the CPU
family, and AMD Zen 5 (family 26) is missing from its list (OpenBLAS issue #6029, fixed upstream
after that release): it falls back to the AVX2 "Haswell" kernels although the CPU has AVX-512.
On a 2-core Zen 5 that leaves 40-50% of the matmul throughput unused (bench/README.md).

OpenBLAS reads the environment variable OPENBLAS_CORETYPE once, when NumPy loads it, so this
module must run before the first `import numpy` of the process; `minprune/__init__.py` imports it
first. If NumPy is already loaded, or the user chose a core type, nothing is changed.
"""
from __future__ import annotations

import os
import sys

# What OpenBLAS itself picks for an AVX-512 + BF16 CPU it knows (Zen 4 and newer Intel).
_AVX512_CORE = "Cooperlake"
_NEEDED_FLAGS = {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512cd", "avx512_bf16"}
_FIRST_UNKNOWN_AMD_FAMILY = 26   # Zen 5: not in the detection table of NumPy's OpenBLAS 0.3.31


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


def core_type_override(vendor: str, family: int, flags: set[str]) -> str | None:
    """The OPENBLAS_CORETYPE to set for this CPU, or None to leave OpenBLAS's own choice."""
    if vendor == "AuthenticAMD" and family >= _FIRST_UNKNOWN_AMD_FAMILY and _NEEDED_FLAGS <= flags:
        return _AVX512_CORE
    return None


def prefer_avx512_kernels() -> str | None:
    """Set OPENBLAS_CORETYPE when it helps and still can; return the value set (or None)."""
    if "OPENBLAS_CORETYPE" in os.environ or "numpy" in sys.modules:
        return None
    core = core_type_override(*_cpuinfo())
    if core is not None:
        os.environ["OPENBLAS_CORETYPE"] = core
    return core


def openblas_core() -> str | None:
    """The kernel family NumPy's OpenBLAS is running ('Haswell', 'Cooperlake', ...), if it can tell."""
    import ctypes
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
