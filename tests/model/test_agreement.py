"""model/agreement.py: the top-k of a whole-vocabulary row (what every bundle row is built from)."""
from __future__ import annotations

import numpy as np
import pytest

from bitcpm_validation.model import agreement as A


def stable_sort_topk(row: np.ndarray, k: int) -> list[int]:
    return [int(t) for t in np.argsort(-row, kind="stable")[:k]]


@pytest.mark.parametrize("seed", range(20))
def test_full_topk_is_the_stable_sorts_top_k_with_ties_at_the_cut(seed):
    rng = np.random.default_rng(seed)
    # few distinct values: ties everywhere, also across the k-th place
    row = rng.integers(-6, 0, size=int(rng.integers(2, 400))).astype(np.float32)
    for k in (1, 5, 20, len(row), len(row) + 3):
        assert A.full_topk(row, k) == stable_sort_topk(row, k), (seed, k)


def test_full_topk_orders_by_value_then_lower_id():
    row = np.array([-1.0, -0.5, -0.5, -3.0, -0.5], dtype=np.float32)
    assert A.full_topk(row, 2) == [1, 2]
    assert A.full_topk(row, 4) == [1, 2, 4, 0]


def test_full_topk_with_nan_keeps_the_stable_sorts_order():
    row = np.array([-1.0, np.nan, -0.2, -2.0], dtype=np.float32)
    assert A.full_topk(row, 2) == stable_sort_topk(row, 2) == [2, 0]


def test_row_from_full_adds_the_requested_ids():
    row = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    r = A.row_from_full(row, 1, also=[3])
    assert set(r) == {0, 3} and r[3] == pytest.approx(np.log(0.05))
