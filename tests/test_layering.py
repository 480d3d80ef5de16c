"""The package's layering: which module may import which, so each can be read on its own."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import minprune

pytestmark = pytest.mark.pruning

PACKAGE = Path(minprune.__file__).parent


def _imports_within(folder: Path) -> dict:
    """{module: set of sibling modules it imports}, counting imports inside functions too."""
    names = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name in names:
        tree = ast.parse((folder / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:  # from .scope import x
                    found.add(node.module.split(".")[0])
                else:  # from . import scope, criteria
                    found.update(a.name for a in node.names)
        graph[name] = found & names - {name}
    return graph


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_prune_modules_import_each_other_without_cycles():
    """scope.py used to import pruner.py (for the sensitivity scan) while pruner.py imports
    scope.py: WHERE must not depend on the function that uses it."""
    graph = _imports_within(PACKAGE / "prune")
    assert {"scope", "pruner", "schedules", "criteria", "masks"} <= set(graph)
    assert "pruner" not in graph["scope"]
    assert _cycle(graph) is None


def test_prune_schedules_is_part_of_the_prune_package_itself():
    """`mp.prune.schedules` must not depend on something else (the experiment runner) having
    imported it first: import minprune with the experiments module replaced by an empty one."""
    code = ("import sys, types\n"
            "sys.modules['minprune.experiments'] = types.ModuleType('minprune.experiments')\n"
            "import minprune.prune as P\n"
            "assert P.schedules.lottery and P.sensitivity_scan is P.schedules.sensitivity_scan\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PACKAGE.parent, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
    assert "schedules" in minprune.prune.__all__
