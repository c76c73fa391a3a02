"""Worst cases of the precision chapter's checks, each from a faulty measurement input (all scope engine)."""
import numpy as np

from bitcpm_validation.chapters import precision as P
from bitcpm_validation.engine.offline import Generation
from bitcpm_validation.model import agreement as A
from bitcpm_validation.params import PrecisionParams

PP = PrecisionParams()
TOL = P.Tolerances.engine(PP, "bfloat16")
# an engine that disagrees with the golden: a third of the top-1s differ, large |Δ|, large KL, one prompt not close
BAD = {"prompts": 2, "positions": 30, "top1_agreement": 0.66, "max_abs_dlogprob": 2.1, "mean_abs_dlogprob": 0.4,
       "mean_kl": 0.3, "kl_basis": "full", "close": 1, "exact_match_lens": [3, 8], "gen_lens": [8, 8]}


def rows_of(logits: np.ndarray, seq, k=20):
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return [A.row_to_pairs(A.row_from_full(lp[i], k, also=[seq[i + 1]])) for i in range(len(seq) - 1)]


def long_pair(n=600, prompt_len=580, perturb=(), stale_from=None, vocab=64, seed=0):
    """A golden bundle and an engine bundle on the same n-token sequence: the engine equals the golden except at
    the `perturb` positions (a wrong row: the golden's logits rolled) and, from `stale_from` on, rows computed from
    stale KV (another sequence's logits)."""
    rng = np.random.default_rng(seed)
    seq = [int(x) for x in rng.integers(0, vocab, n)]
    g = rng.normal(0, 3, (n, vocab))
    e = g.copy()
    for i in perturb:
        e[i] = np.roll(g[i], 7)
    if stale_from is not None:
        e[stale_from:] = rng.normal(0, 3, (n - stale_from, vocab))
    item = lambda L: {"id": "long-600", "prompt_ids": seq[:prompt_len], "tf_ids": seq, "tf_rows": rows_of(L, seq),  # noqa: E731
                      "gen_ids": seq[prompt_len:], "gen_rows": rows_of(L, seq)[prompt_len - 1:]}
    gb = {"version": 1, "label": "golden", "k": 20, "items": [item(g)]}
    eb = {"version": 1, "label": "engine", "k": 20, "items": [item(e)]}
    return A.compare_bundles(gb, eb, tie_margin=TOL.tie_margin)


def gen(ids, lps):
    return Generation([], list(ids), "", "length", logprobs=[{t: lp, (t + 1) % 50: lp - 1.0} for t, lp in zip(ids, lps)])


class ScriptedEngine:
    """Answers generate() from a script: cold, then a cached request whose KV was stale (other logprobs)."""

    def __init__(self, outs):
        self.outs = list(outs)

    def generate(self, prompts, **kw):
        return [self.outs.pop(0)]


def stale_cache_probe():
    cold = gen([5, 6, 7, 8], [-0.1, -0.2, -0.3, -0.1])
    stale = gen([5, 9, 9, 9], [-0.1, -2.5, -3.0, -3.1])  # the cached request read another prompt's KV
    cold.num_cached_tokens, stale.num_cached_tokens = 0, 256
    golden_rows = [{5: -0.1, 6: -2.0}, {6: -0.2, 9: -4.0}, {7: -0.3, 9: -4.0}, {8: -0.1, 9: -4.0}]
    return P.prefix_cache_probe(ScriptedEngine([cold, stale]), list(range(377)), [5, 6, 7, 8], golden_rows, 4, 2)


def batch_differs():
    """The long prompt generates other tokens inside the batch than alone (batch first, then alone)."""
    alone, batched = gen([5, 6, 7], [-0.1, -0.2, -0.3]), gen([5, 6, 30], [-0.1, -0.2, -0.9])
    return P.batch_probe(ScriptedEngine([batched, alone]), [("long-2016", list(range(2016)))], 3, 2)


CASES = {
    "agreement": lambda: P.judge_agreement("engine-vs-reference", BAD, TOL),
    "logprobs_close": lambda: P.judge_logprobs_close("engine-vs-reference", BAD),
    "baseline": lambda: P.judge_baseline(0, "runs/missing", error="baseline runs/missing: not found: name an "
                                                                  "existing run directory (runs/<id>)"),
    # a perturbed position: every row right but a few, each a wrong distribution
    "family_agreement": lambda: P.judge_family("long-600", long_pair(perturb=range(100, 160))["summary"], TOL),
    # chunked prefill that reads wrong KV after the first 512-token chunk
    "chunked_prefill": lambda: P.judge_chunked(P.chunk_split(long_pair(stale_from=513)["per_prompt"], 512), TOL),
    "prefix_cache": lambda: P.judge_prefix_cache(stale_cache_probe(), TOL.tie_margin),
    "batch_mixed": lambda: P.judge_batch(batch_differs(), TOL.tie_margin),
    "whole_vocab": lambda: P.judge_whole_vocab({"ok": False, "engine_alive": False,
                                                "error": "shared engine answered HTTP 400: logprobs too large"}),
}
