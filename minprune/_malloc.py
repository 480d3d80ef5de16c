"""Keep freed activation buffers inside the process instead of returning them to the OS every step.

A training step allocates and frees the same few-MB NumPy arrays (activations, gradients, patch
matrices) again and again. glibc's malloc serves big blocks with a fresh mmap() and trims the top
of its heap when much memory there is free, so every step the kernel has to map and zero those
pages again: 2,300 page faults and ~8 ms of system time per LeNet-5 training step, 5,600 faults
per conv4 step (getrusage; bench/README.md). Raising the two thresholds below makes malloc reuse
the freed blocks: LeNet-5's step went from 14.2 to 8.2 ms (best of 40), peak RSS unchanged.

(PyTorch hid this in the benchmark: once torch has run a step in the same process, its own
allocations happen to stop the heap from being trimmed, and minprune ran 2x faster beside it.)

glibc on Linux only; elsewhere, or with MINPRUNE_NO_MALLOC_TUNING=1 in the environment, nothing
is changed. The setting is process-wide and only changes *when* freed memory goes back to the
OS, never what a program computes.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1   # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # the largest glibc accepts on 64-bit: blocks below come from the heap
TRIM_THRESHOLD = 256 << 20  # keep up to this much free memory at the heap's top


def keep_freed_memory() -> bool:
    """Apply the two thresholds; True if glibc accepted them."""
    if not sys.platform.startswith("linux") or os.environ.get("MINPRUNE_NO_MALLOC_TUNING"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter itself runs on
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                             TRIM_THRESHOLD))
