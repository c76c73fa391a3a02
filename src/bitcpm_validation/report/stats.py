"""Statistics that size and judge an accuracy measurement (scipy.stats; scores in points, 0-100).

Sizing follows TensorRT-LLM's accuracy suite (tests/integration/defs/accuracy/accuracy_core.py,
`compute_theta` / `compute_threshold`): a one-sided test of a candidate against a reference measured on
the same number of items, each mean with per-item spread sigma, so the difference has standard error
sqrt(2 sigma^2 / n). Minimum detectable effect at false-alarm rate alpha and miss rate beta:

    theta = (Phi^-1(1 - beta) - Phi^-1(alpha)) * sqrt(2 sigma^2 / n)   <=>   n = 2 sigma^2 (z_{1-alpha} + z_{1-beta})^2 / theta^2

and the pass threshold (higher is better): reference + Phi^-1(alpha) * sqrt(2 sigma^2 / n).

A baseline run on the same items is paired instead: the exact McNemar test (a binomial test on the
discordant items, scipy.stats.binomtest), which needs no sigma and detects smaller changes at the same n.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Sequence

from scipy import stats as _st

Z95 = float(_st.norm.ppf(0.975))


def sigma_of(p_points: float) -> float:
    """Per-item standard deviation (points) of a 0/1 score with mean p (points): 100 * sqrt(p (1 - p))."""
    p = min(max(p_points / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p))


def _z_sum(alpha: float, beta: float) -> float:
    return float(_st.norm.ppf(1.0 - beta) - _st.norm.ppf(alpha))


def detectable_theta(n: int, sigma: float, alpha: float = 0.05, beta: float = 0.2) -> float:
    """The smallest drop (points) that n items detect with miss rate beta at false-alarm rate alpha."""
    if n <= 0:
        return math.inf
    return _z_sum(alpha, beta) * math.sqrt(2.0 * sigma ** 2 / n)


def samples_needed(theta: float, sigma: float, alpha: float = 0.05, beta: float = 0.2) -> int:
    """Items needed to detect a drop of theta points (the inverse of detectable_theta, rounded up)."""
    if theta <= 0:
        raise ValueError(f"theta must be > 0 points, got {theta}")
    return max(1, math.ceil(2.0 * sigma ** 2 * _z_sum(alpha, beta) ** 2 / theta ** 2))


def threshold(reference: float, n: int, sigma: float, alpha: float = 0.05, higher_is_better: bool = True) -> float:
    """The score (points) a candidate must reach against a reference measured on n items."""
    scale = math.sqrt(2.0 * sigma ** 2 / n)
    z_alpha = float(_st.norm.ppf(alpha))  # negative
    return reference + z_alpha * scale if higher_is_better else reference - z_alpha * scale


def proportion_interval(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson interval (points) of correct / n: honest at small n and near 0 or 1, unlike score +- 2 SE."""
    if n <= 0:
        return (math.nan, math.nan)
    ci = _st.binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return (100.0 * ci.low, 100.0 * ci.high)


@dataclass
class Stratum:
    """One subtask of a group: its size in the dataset, the items scored and their mean (0-1 scores)."""
    name: str
    size: int
    n: int
    mean: float
    var: float  # sample variance of the item scores (p (1 - p) for 0/1 scores)


def stratified(strata: Sequence[Stratum]) -> tuple[float, float]:
    """Group score (points) weighted by subtask size and its standard error (stratified sampling:
    Var = sum w_h^2 var_h / n_h, with the finite-population correction (1 - n_h / N_h))."""
    total = sum(s.size for s in strata if s.n > 0)
    if total == 0:
        return (math.nan, math.nan)
    mean = sum(s.size * s.mean for s in strata if s.n > 0) / total
    var = 0.0
    for s in strata:
        if s.n <= 0:
            continue
        w = s.size / total
        fpc = max(0.0, 1.0 - s.n / s.size) if s.size else 1.0
        var += w * w * s.var / s.n * fpc
    return (100.0 * mean, 100.0 * math.sqrt(var))


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """n items split over subtasks in proportion to their sizes (largest remainder; at least one item per
    subtask while n allows; never more than a subtask has)."""
    sizes = dict(sorted(sizes.items()))  # the same split whatever order the subtasks come in
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    raw = {k: n * v / total for k, v in sizes.items()}
    out = {k: min(sizes[k], int(math.floor(r))) for k, r in raw.items()}
    if n >= len(sizes):
        for k in out:
            if out[k] == 0 and sizes[k] > 0:
                out[k] = 1
    left = n - sum(out.values())
    for k in sorted(raw, key=lambda k: (-(raw[k] - math.floor(raw[k])), -sizes[k], k)):
        if left <= 0:
            break
        if out[k] < sizes[k]:
            out[k] += 1
            left -= 1
    while left < 0:  # the minimum of one per subtask overshot: take back from the largest
        k = max(out, key=lambda k: out[k])
        out[k] -= 1
        left += 1
    return out


@dataclass
class PairedResult:
    n: int
    candidate_only: int  # items the candidate gets right and the baseline wrong
    baseline_only: int  # items the baseline gets right and the candidate wrong
    diff_points: float  # candidate - baseline, points
    ci: tuple[float, float]  # 95 % interval of the difference, points
    p_worse: float  # exact McNemar, one-sided: the candidate loses more items than it wins
    p_two_sided: float

    def as_dict(self) -> dict:
        return asdict(self)


def mcnemar(candidate: Iterable[bool], baseline: Iterable[bool]) -> PairedResult:
    """Paired comparison of 0/1 outcomes on the same items: exact McNemar (binomial test on the discordant
    pairs) and the paired difference with its 95 % interval (Wald, on the per-item differences)."""
    c = [bool(x) for x in candidate]
    b = [bool(x) for x in baseline]
    if len(c) != len(b):
        raise ValueError(f"paired outcomes differ in length: {len(c)} vs {len(b)}")
    n = len(c)
    wins = sum(1 for x, y in zip(c, b) if x and not y)
    losses = sum(1 for x, y in zip(c, b) if y and not x)
    disc = wins + losses
    if disc:
        p_worse = float(_st.binomtest(losses, disc, 0.5, alternative="greater").pvalue)
        p_two = float(_st.binomtest(losses, disc, 0.5).pvalue)
    else:
        p_worse = p_two = 1.0
    diff = (wins - losses) / n if n else 0.0
    var = ((wins + losses) / n - diff ** 2) / n if n else 0.0
    half = Z95 * math.sqrt(max(var, 0.0))
    return PairedResult(n, wins, losses, 100.0 * diff, (100.0 * (diff - half), 100.0 * (diff + half)), p_worse, p_two)


# -- which order statistics a sample supports ---------------------------------------------------------------
P99_MIN_SAMPLES = 100  # p99 of fewer than 100 samples is the largest one or an interpolation towards it


def supported_percentiles(n: Optional[int]) -> tuple[str, ...]:
    """The order statistics that n samples support, as the report shows them: p50 and p99 from 100 samples on;
    below that p50 and max (a p99 of 8 requests is the slowest request under another name); none without samples.
    n is counted as the tool counts it (TTFT and TPOT: one per request; ITL: one per token gap)."""
    if not n or n <= 0:
        return ()
    return ("p50", "p99") if n >= P99_MIN_SAMPLES else ("p50", "max")
