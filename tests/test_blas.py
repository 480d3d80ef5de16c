"""minprune._blas: picking OpenBLAS's AVX-512 kernels on CPUs its detection does not know."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minprune import _blas

pytestmark = pytest.mark.engine

AVX512 = {"avx2", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512cd", "avx512_bf16"}


@pytest.mark.parametrize(("vendor", "family", "flags", "expected"), [
    ("AuthenticAMD", 26, AVX512, "Cooperlake"),              # Zen 5: unknown to OpenBLAS 0.3.31
    ("AuthenticAMD", 25, AVX512, None),                      # Zen 4: OpenBLAS detects it itself
    ("AuthenticAMD", 26, AVX512 - {"avx512_bf16"}, None),    # a VM hiding part of AVX-512
    ("GenuineIntel", 6, AVX512, None),
    ("", -1, set(), None),                                   # no /proc/cpuinfo
])
def test_core_type_override(vendor, family, flags, expected):
    assert _blas.core_type_override(vendor, family, flags) == expected


def test_cpuinfo_reads_the_first_cpu(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nflags\t\t: fpu avx512f\n\n"
                 "processor\t: 1\nvendor_id\t: Other\n")
    assert _blas._cpuinfo(str(f)) == ("AuthenticAMD", 26, {"fpu", "avx512f"})
    assert _blas._cpuinfo(str(tmp_path / "missing")) == ("", -1, set())


def test_an_explicit_choice_or_a_loaded_numpy_is_left_alone(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert _blas.prefer_avx512_kernels() is None
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert "numpy" in sys.modules          # too late in this process: OpenBLAS is already loaded
    assert _blas.prefer_avx512_kernels() is None
    assert "OPENBLAS_CORETYPE" not in os.environ


def test_importing_minprune_first_sets_the_core_openblas_then_runs():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    code = ("import os, minprune, minprune._blas as b; "
            "print(os.environ.get('OPENBLAS_CORETYPE'), b.openblas_core())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split()
    wanted = _blas.core_type_override(*_blas._cpuinfo())
    assert out[0] == str(wanted)
    if wanted is not None and out[1] != "None":    # OpenBLAS names Cooperlake's kernels SkylakeX
        assert out[1] in {"SkylakeX", "Cooperlake", "SapphireRapids"}
