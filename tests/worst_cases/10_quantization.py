from bitcpm_validation.chapters import quantization as Q

DENSE_PROJ = Q.TensorInfo("model.layers.0.self_attn.q_proj.weight", [64, 64], "bfloat16", 4096, 8192, "projection", False)
BROKEN = Q.TensorInfo("model.layers.0.mlp.up_proj.weight", [64, 64], "bfloat16", 4096, 8192, "projection", True,
                      granularity="g32", roundtrip=False)


def _sizes(**over):
    s = {"ternary_params": 0, "compression_base3": 0.1, "compression_2bit": 0.1, "ternary_share": 0.0,
         "total_2bit_bytes": 0.9e9, "total_base3_bytes": 0.85e9, "stored_bytes": 0.87e9, "dense_bytes": 0.1e9}
    return {**s, **over}


CASES = {
    "projections_ternary": lambda: Q.judge_projections([DENSE_PROJ]),
    "granularity": lambda: Q.judge_granularity([DENSE_PROJ]),
    "roundtrip": lambda: Q.judge_roundtrip([BROKEN]),
    "claim_bits": lambda: Q.judge_claims(_sizes(), "checkpoint")[0],
    "claim_compression": lambda: Q.judge_claims(_sizes(), "full-0.5b")[1],
    "claim_size_03gb": lambda: Q.judge_size_claim(_sizes()),
}
