"""minprune.performance: importing minprune changes no process setting; tune() opts in."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from minprune import performance

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[1]
AVX512 = {"avx2", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512cd", "avx512_bf16"}
GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")


def _run(code, **env):
    """stdout of `code` run by a fresh interpreter, without OPENBLAS_CORETYPE unless given."""
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, check=True,
                          capture_output=True, text=True, cwd=ROOT).stdout


def test_importing_minprune_first_leaves_the_environment_alone():
    """Before, `import minprune` set OPENBLAS_CORETYPE on some CPUs when it came before NumPy."""
    out = _run("import os\nbefore = dict(os.environ)\nimport minprune\n"
               "print(dict(os.environ) == before, 'OPENBLAS_CORETYPE' in os.environ)")
    assert out.split() == ["True", "False"]


# Page faults of three LeNet-5 training steps after two warm-up steps (a fresh process each).
_PROBE = """
import resource
import numpy as np
import minprune as mp
if TUNE:
    mp.performance.tune()
model = mp.models.lenet5(seed=0)
opt = mp.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = np.random.default_rng(0).standard_normal((128, 1, 28, 28)).astype(np.float32)
y = np.arange(128) % 10
for step in range(5):
    if step == 2:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    loss = mp.nn.functional.cross_entropy(model(mp.Tensor(x)), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


@GLIBC
def test_import_leaves_malloc_alone_and_tune_makes_steps_reuse_freed_memory():
    untuned = int(_run(_PROBE.replace("TUNE", "False")))
    tuned = int(_run(_PROBE.replace("TUNE", "True")))
    # measured here: 0-63 faults per step with the setting, 516-2,300 with glibc's defaults
    assert tuned * 5 < untuned


@GLIBC
def test_keep_freed_memory_is_accepted_by_glibc():
    assert performance.keep_freed_memory() is True


@pytest.mark.parametrize(("vendor", "family", "flags", "expected"), [
    ("AuthenticAMD", 26, AVX512, "Cooperlake"),              # Zen 5: unknown to OpenBLAS 0.3.31
    ("AuthenticAMD", 25, AVX512, None),                      # Zen 4: OpenBLAS detects it itself
    ("AuthenticAMD", 26, AVX512 - {"avx512_bf16"}, None),    # a VM hiding part of AVX-512
    ("GenuineIntel", 6, AVX512, None),
    ("", -1, set(), None),                                   # no /proc/cpuinfo
])
def test_core_type_override(vendor, family, flags, expected):
    assert performance.core_type_override(vendor, family, flags) == expected


def test_cpuinfo_reads_the_first_cpu(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nflags\t\t: fpu avx512f\n\n"
                 "processor\t: 1\nvendor_id\t: Other\n")
    assert performance._cpuinfo(str(f)) == ("AuthenticAMD", 26, {"fpu", "avx512f"})
    assert performance._cpuinfo(str(tmp_path / "missing")) == ("", -1, set())


def test_tune_suggests_a_core_type_only_where_it_helps_and_none_is_chosen(monkeypatch):
    monkeypatch.setattr(performance, "_cpuinfo", lambda: ("AuthenticAMD", 26, AVX512))
    monkeypatch.setattr(performance, "keep_freed_memory", lambda: True)
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    with pytest.warns(RuntimeWarning, match="OPENBLAS_CORETYPE=Cooperlake"):
        assert performance.tune() == {"malloc": True, "openblas_coretype": "Cooperlake"}
    assert "OPENBLAS_CORETYPE" not in os.environ            # a suggestion, never set for you
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")      # the user chose: say nothing
    assert performance.tune() == {"malloc": True, "openblas_coretype": None}


def test_openblas_core_names_the_kernels_in_use():
    core = performance.openblas_core()
    assert core is None or (isinstance(core, str) and core)
