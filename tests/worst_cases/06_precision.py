"""Worst cases of the precision chapter's checks (all scope engine, worst fail)."""
from bitcpm_validation.chapters import precision as P
from bitcpm_validation.params import PrecisionParams

TOL = P.Tolerances.engine(PrecisionParams())
# an engine that disagrees with the golden: a third of the top-1s differ, large |Δ|, large KL, one prompt not close
BAD = {"prompts": 2, "positions": 30, "top1_agreement": 0.66, "max_abs_dlogprob": 2.1, "mean_abs_dlogprob": 0.4,
       "mean_kl": 0.3, "kl_basis": "full", "close": 1, "exact_match_lens": [3, 8], "gen_lens": [8, 8]}

CASES = {
    "agreement": lambda: P.judge_agreement("engine-vs-reference", BAD, TOL),
    "logprobs_close": lambda: P.judge_logprobs_close("engine-vs-reference", BAD),
    "baseline": lambda: P.judge_baseline(0, "runs/missing", error="baseline runs/missing: not found: name an "
                                                                  "existing run directory (runs/<id>)"),
}
