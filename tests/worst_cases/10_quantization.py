from bitcpm_validation.chapters import quantization as Q



def _dense_projection():
    """A projection that was never quantized (Gaussian bf16 values), measured by analyze_tensor."""
    import torch

    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    return Q.analyze_tensor("model.layers.0.self_attn.q_proj.weight", w, [32, 64])


def _ternary(rows: int = 64, cols: int = 64, group: int = 32):
    """A ternary projection weight: codes in {-1, 0, 1} times one scale per group of `group`."""
    import torch

    g = torch.Generator().manual_seed(0)
    codes = torch.randint(-1, 2, (rows, cols), generator=g).to(torch.float32)
    scales = (torch.rand(rows * cols // group, 1, generator=g) + 0.5).repeat(1, group).reshape(rows, cols)
    return (codes * scales).to(torch.bfloat16)


def _flip_one_trit(pack):
    """A packer with a bug: the packed bytes are right except one trit (the first byte's lowest digit, +1 mod 3)."""
    def packed(codes):
        data = bytearray(pack(codes))
        low = data[0] % 3
        data[0] = data[0] - low + (low + 1) % 3
        return bytes(data)
    return packed


def _roundtrip_with_a_faulty_packer():
    """The measurement itself (analyze_tensor -> verify_roundtrip) on a real ternary tensor, with a base-3 packer
    that flips one trit: the round trip must notice."""
    faulty = ((Q.pack_2bit, Q.unpack_2bit), (_flip_one_trit(Q.pack_base3), Q.unpack_base3))
    info = Q.analyze_tensor("model.layers.0.mlp.up_proj.weight", _ternary(), [32], packers=faulty)
    assert info.ternary and info.roundtrip is False
    return Q.judge_roundtrip([info])



def _sizes(**over):
    s = {"ternary_params": 0, "compression_base3": 0.1, "compression_2bit": 0.1, "ternary_share": 0.0,
         "total_2bit_bytes": 0.9e9, "total_base3_bytes": 0.85e9, "stored_bytes": 0.87e9, "dense_bytes": 0.1e9}
    return {**s, **over}


CASES = {
    "projections_ternary": lambda: Q.judge_projections([_dense_projection()]),
    "granularity": lambda: Q.judge_granularity([_dense_projection()]),
    "roundtrip": _roundtrip_with_a_faulty_packer,
    "claim_bits": lambda: Q.judge_claims(_sizes(), "checkpoint")[0],
    "claim_compression": lambda: Q.judge_claims(_sizes(), "full-0.5b")[1],
    "claim_size_03gb": lambda: Q.judge_size_claim(_sizes()),
}
