"""Checkers for the lesson exercises, one module per lesson (classroom autograding).

A lesson's exercise cell asks the student to write a small function; the next cell hands it to that
exercise's checker, which compares the answer with the truth on several inputs and either prints
"✓ correct" or raises `AssertionError` with a hint: the input that failed, what was expected, what
came back, and the usual mistake that gives that answer.

    import minprune.exercises as ex
    ex.check_mul_backward(my_mul_backward)          # the lesson's self-check
    ex.EXERCISES["01.1"](my_mul_backward, variant=7) # a hidden variant, as the autograder runs it

While the student's function runs, the minprune functions that would compute the answer are blocked
(`blocking.py`). `minprune course grade` runs these same checks on hidden variants.
"""
from .blocking import WriteItYourself
from .core import EXERCISES
from .lesson01 import check_grad_check, check_mul_backward, check_unbroadcast
from .lesson02 import check_conv_macs, check_conv_output_shape, check_im2col_shape
from .lesson03 import check_accuracy, check_count_parameters, check_weight_fraction
from .lesson04 import check_global_threshold, check_gradient_scores, check_sparsity
from .lesson05 import check_global_counts, check_layerwise_counts
from .lesson06 import check_fisher_scores, check_rank_correlation, check_taylor_prediction
from .lesson07 import check_filter_l1_scores, check_nm_mask
from .lesson08 import check_apoz, check_topk_activations
from .lesson09 import check_cubic_ramp, check_round_sparsities
from .lesson10 import check_snip_scores, check_synflow_scores
from .lesson11 import check_near_zero_fraction, check_reinitialize, check_scratch_b_epochs
from .lesson12 import check_mask_overlap, check_rewind
from .lesson13 import check_compression_ratio, check_seed_summary
from .lesson14 import check_coupled_groups, check_group_lasso_penalty, check_params_left
from .lesson15 import check_csr_grad_input, check_dense_to_csr, check_pack_2_4
from .lesson16 import check_capstone

__all__ = ["EXERCISES", "WriteItYourself",
           "check_accuracy", "check_apoz", "check_capstone", "check_compression_ratio", "check_conv_macs",
           "check_conv_output_shape", "check_count_parameters", "check_coupled_groups",
           "check_csr_grad_input", "check_cubic_ramp", "check_dense_to_csr", "check_filter_l1_scores",
           "check_fisher_scores", "check_global_counts",
           "check_global_threshold", "check_grad_check", "check_gradient_scores",
           "check_group_lasso_penalty", "check_im2col_shape",
           "check_layerwise_counts", "check_mask_overlap", "check_mul_backward",
           "check_near_zero_fraction", "check_nm_mask", "check_pack_2_4", "check_params_left",
           "check_rank_correlation",
           "check_reinitialize",
           "check_rewind", "check_round_sparsities", "check_scratch_b_epochs", "check_seed_summary",
           "check_snip_scores", "check_sparsity", "check_synflow_scores", "check_taylor_prediction",
           "check_topk_activations", "check_unbroadcast", "check_weight_fraction"]
