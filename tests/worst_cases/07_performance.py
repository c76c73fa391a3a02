"""Worst cases of the performance chapter's checks (chapters.performance)."""
from bitcpm_validation.chapters import performance as P

_FAILED_LEVEL = {"completed": 3, "num_prompts": 4, "failed": 1}

CASES = {
    # 3 tok/s against a 25 tok/s limit on a CPU: 12 %, below the 15 % failure threshold
    "decode_of_limit": lambda: P.judge_decode(3.0, 25.0, "cpu", 40, 15,
                                              [P.Cause("AVX2 only", "仅 AVX2")]),
    # 10 tok/s prefill against a 1,000 tok/s compute limit: 1 %
    "prefill_of_compute": lambda: P.judge_prefill(10.0, 1000.0, "cpu", 25, 5),
    "requests_completed": lambda: P.judge_completed({1: _FAILED_LEVEL}),
    # concurrency 4 slower than concurrency 1
    "scales_with_concurrency": lambda: P.judge_scaling(
        [{"concurrency": 1, "output_tok_s": 30.0}, {"concurrency": 4, "output_tok_s": 20.0}], 1.2),
    "faster_than_base": lambda: P.judge_vs_base(30.0, 33.0, "models/minicpm4-0.5b"),
}
