"""Worst cases of the accuracy chapter's checks: a failed task, noise-level scores, a score far from published."""
from bitcpm_validation.chapters import accuracy as A

CASES = {
    "task": lambda: A.judge_task(A.TaskResult("mmlux", "failed", reason="task 'mmlux' is not known to lm-eval")),
    # a random model on 40 four-choice items: 0.30 ± 0.07 is not above chance
    "above_chance": lambda: A.judge_above_chance("bitcpm_probe_mc", 0.30, 0.073, 40, 0.25),
    "published": lambda: A.judge_published("mmlu", 0.26, 0.05, fail_outside=True, is_stand_in=False),
}
