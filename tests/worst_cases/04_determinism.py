"""Worst cases of the determinism chapter's checks: generations that differ, or stop early."""
from bitcpm_validation.chapters import determinism as D

_SAME = [[1, 2, 3], [4, 5, 6]]

CASES = {
    "determinism_repeat": lambda: D.judge_repeat(D.compare_all(["a", "b"], [_SAME, [[1, 2, 3], [4, 5, 9]]])),
    "determinism_restart": lambda: D.judge_restart(D.compare_all(["a", "b"], [_SAME, _SAME],
                                                                  restart=[[1, 9, 3], [4, 5, 6]])),
    "determinism_batch": lambda: D.judge_batch(D.compare_all(["a", "b"], [_SAME, _SAME], alone=[[1, 2, 3], [4, 7, 6]])),
}
