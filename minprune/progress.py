"""Progress bars only where someone watches them.

tqdm redraws its bar in place on a terminal or as a notebook widget. Written to a log file or CI
output, each redraw becomes one more line: thousands of lines for one training run. So a bar is
drawn only for a terminal or a notebook; elsewhere a long run says what it did in a few lines
(see `runner.Progress`).
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def watched() -> bool:
    """Someone watches the output: stderr is a terminal, or this is a notebook kernel."""
    if sys.stderr.isatty():
        return True
    ipython = sys.modules.get("IPython")  # imported by every notebook kernel
    return ipython is not None and type(ipython.get_ipython()).__name__ == "ZMQInteractiveShell"


def bar(total: int, desc: str, enabled: bool = True) -> tqdm:
    """A tqdm bar that is drawn only if `enabled` and someone watches; it vanishes when done."""
    return tqdm(total=total, desc=desc, disable=not (enabled and watched()), leave=False)
