"""Worst cases of the performance chapter's checks (chapters.performance): measurements a healthy device on a
quiet host would not give, fed to the same judges the chapter uses."""
from bitcpm_validation.chapters import performance as P
from bitcpm_validation.engine.hostload import HostLoad

_FAILED_LEVEL = {"completed": 3, "num_prompts": 4, "failed": 1}
# a quiet host (0.01 cores of others over a minute), 8 requests per percentile, one warm-up request
_VALID = P.validity({"benchmark sweep": HostLoad(60.0, 2, 0.6, 0.01, 0.0, 1.0, [])}, 8, 1, 0.25, 0.05, 8)
# the stand-in's decode step on the shared server, 2 ms for 4 layers; the full shape: 24 layers, 2 GB of float32
_STAND_IN = {"layers": 4, "weight_bytes": 14_000_000}
_FULL = {"layers": 24, "weight_bytes": 1_735_495_680, "matmul_params": 358_000_000, "attn_flops_per_ctx_token": 6144}
_DECODE_FLOOR, _PREFILL_FLOOR = P.floor_bases(2.0, _STAND_IN, _FULL, 20.0, 200e9, 128)

CASES = {
    # 1 tok/s where the floor says ~10 tok/s, on a quiet host: a genuinely slow engine
    "decode_of_limit": lambda: P.judge_decode(1.0, [None, None, _DECODE_FLOOR], "cpu", 50, 20, _VALID,
                                              [P.Cause("AVX2 only", "仅 AVX2")]),
    # 10 prompt tok/s where the floor plus the prompt's FLOPs gives ~250
    "prefill_of_compute": lambda: P.judge_prefill(10.0, [_PREFILL_FLOOR], "cpu", 40, 10, _VALID),
    "requests_completed": lambda: P.judge_completed({1: _FAILED_LEVEL}),
    # concurrency 4 slower than concurrency 1
    "scales_with_concurrency": lambda: P.judge_scaling(
        [{"concurrency": 1, "output_tok_s": 30.0}, {"concurrency": 4, "output_tok_s": 20.0}], 1.2, _VALID),
    "faster_than_base": lambda: P.judge_vs_base(30.0, 33.0, "models/minicpm4-0.5b"),
}
