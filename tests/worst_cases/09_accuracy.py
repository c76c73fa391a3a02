"""Worst cases of the accuracy chapter's checks: a failed task, noise-level scores, a score far from published."""
from bitcpm_validation.chapters import accuracy as A

CASES = {
    "task": lambda: A.judge_task(A.TaskResult("mmlux", "failed", reason="task 'mmlux' is not known to lm-eval")),
    # a random model on 40 four-choice items: 0.30 ± 0.07 is not above chance
    "above_chance": lambda: A.judge_above_chance("bitcpm_probe_mc", 0.30, 0.073, 40, 0.25),
    "published": lambda: A.judge_published("mmlu", 0.26, 0.05, fail_outside=True, is_stand_in=False),
}


def _plan():
    return A.plan_task("mmlu", {"theta": 3.0, "alpha": 0.05, "beta": 0.2, "sigma": None}, 14042, reference=50.0)


def _flipped_baseline():
    """A baseline that got 40 items right which this run gets wrong (and none the other way)."""
    from bitcpm_validation.report import items

    base = [{"subtask": "s", "doc_id": i, "filter": "none", "doc_hash": "d", "prompt_hash": "p", "target_hash": "t",
             "metric": "acc", "score": 1.0} for i in range(200)]
    cand = [{**r, "score": 0.0 if r["doc_id"] < 40 else 1.0} for r in base]
    return items.pair(cand, base)


# a score well under the registered reference on 3,435 items: below the threshold
CASES["reference"] = lambda: A.judge_reference("mmlu", {"points": 45.0, "n": 3435}, {"value": 50.0, "n": 3435}, _plan())
CASES["baseline"] = lambda: A.judge_baseline("mmlu", _flipped_baseline(), 0.05, "runs/base")
