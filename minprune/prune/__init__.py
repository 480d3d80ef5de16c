"""Pruning, along the seed note's axes: criteria (HOW), structures (WHAT), scope (WHERE),
schedules (WHEN / HOW OFTEN), plus the masks that hold the result and the metrics that judge it."""
from . import criteria, masks, metrics, regularizers, schedules, scope, structures, surgery
from .criteria import CRITERIA, MovementTracker
from .graph import dependency_graph
from .masks import apply_masks, get_masks, prunable_layers, remove, reset
from .metrics import (
                      activation_density,
                      compression_ratio,
                      count_nonzero,
                      count_params,
                      flops,
                      layer_costs,
                      report,
                      sparsity,
                      theoretical_speedup,
)
from .pruner import activation_sparsity, prune, prune_activations
from .regularizers import group_lasso, slimming
from .schedules import sensitivity_scan, sparsities_from_scan
from .sparse import sparsify
from .surgery import compact, measured_speedup

__all__ = ["prune", "prune_activations", "activation_sparsity", "remove", "reset", "get_masks",
           "apply_masks", "prunable_layers", "CRITERIA", "MovementTracker", "sensitivity_scan",
           "sparsities_from_scan", "count_params", "count_nonzero", "sparsity", "compression_ratio",
           "flops", "layer_costs", "theoretical_speedup", "activation_density", "report",
           "compact", "measured_speedup", "sparsify", "group_lasso", "slimming", "dependency_graph",
           "criteria", "regularizers", "masks", "metrics", "schedules", "scope", "structures", "surgery"]
