# coding=utf-8
"""A compact MiniCPM (dense attention) for transformers, written by the bitcpm-validation project.

It implements the MiniCPM4 arithmetic: embeddings * scale_emb; pre-norm layers whose residual
branches are scaled by scale_depth / sqrt(num_hidden_layers); fp32 RMSNorm; GQA attention with
neox (rotate-half) RoPE in fp32, LongRoPE short/long factors and mscale; SiLU-gated MLP; logits =
lm_head(norm(h) / (hidden_size / dim_model_base)); tied embeddings by default. A KV cache
(transformers' DynamicCache, returned as `past_key_values`) so that `generate()` feeds only the new
tokens and still sees the whole sequence; a 2-D attention_mask masks padded keys. No sparse
attention: it exists so that `AutoModelForCausalLM` with trust_remote_code works on the directory, as
with the real repository; vLLM uses its own MiniCPMForCausalLM and needs only configuration_minicpm.py.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_minicpm import MiniCPMConfig


class MiniCPMRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        dtype = hidden_states.dtype
        x = hidden_states.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


def _rope_cos_sin(config, positions, head_dim):
    """cos, sin [B, 1, T, head_dim] for positions [B, T] (broadcast over the heads)."""
    base = getattr(config, "rope_theta", 10000.0) or 10000.0
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    rs = getattr(config, "rope_scaling", None) or {}
    mscale = 1.0
    if rs.get("rope_type", rs.get("type")) == "longrope":
        orig = rs["original_max_position_embeddings"]
        maxp = config.max_position_embeddings
        # As openbmb's MiniCPMLongRoPE: the cache is built for max_position_embeddings, so the long
        # factors apply whenever max_position_embeddings > original_max_position_embeddings.
        factors = rs["long_factor"] if maxp > orig else rs["short_factor"]
        inv_freq = inv_freq / torch.tensor(factors, dtype=torch.float32)
        if maxp > orig:
            mscale = math.sqrt(1 + math.log(maxp / orig) / math.log(orig))
    freqs = positions.to(torch.float32)[..., None] * inv_freq.to(positions.device)
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos() * mscale, emb.sin() * mscale


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class MiniCPMAttention(nn.Module):
    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.layer_idx = layer_idx
        self.nh = config.num_attention_heads
        self.nkv = config.num_key_value_heads
        self.hd = config.hidden_size // self.nh
        bias = getattr(config, "attention_bias", False)
        self.q_proj = nn.Linear(config.hidden_size, self.nh * self.hd, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.nkv * self.hd, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.nkv * self.hd, bias=bias)
        self.o_proj = nn.Linear(self.nh * self.hd, config.hidden_size, bias=bias)

    def forward(self, x, cos, sin, mask, past_key_values=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        dtype = q.dtype
        qf, kf = q.float(), k.float()
        q = (qf * cos + _rotate_half(qf) * sin).to(dtype)
        k = (kf * cos + _rotate_half(kf) * sin).to(dtype)
        if past_key_values is not None:  # the cache holds every earlier position's rotated keys and values
            k, v = past_key_values.update(k, v, self.layer_idx)
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        scores = scores.masked_fill(mask, float("-inf"))
        p = torch.softmax(scores.float(), dim=-1).to(dtype)
        out = (p @ v).transpose(1, 2).reshape(b, t, self.nh * self.hd)
        return self.o_proj(out)


class MiniCPMMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MiniCPMDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.self_attn = MiniCPMAttention(config, layer_idx)
        self.mlp = MiniCPMMLP(config)
        self.input_layernorm = MiniCPMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = MiniCPMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.residual_scale = config.scale_depth / math.sqrt(config.num_hidden_layers)

    def forward(self, h, cos, sin, mask, past_key_values=None):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask, past_key_values) * self.residual_scale
        h = h + self.mlp(self.post_attention_layernorm(h)) * self.residual_scale
        return h


class MiniCPMPreTrainedModel(PreTrainedModel):
    config_class = MiniCPMConfig
    base_model_prefix = "model"
    _no_split_modules = ["MiniCPMDecoderLayer"]
    _supports_cache_class = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
        elif isinstance(module, MiniCPMRMSNorm):
            module.weight.data.fill_(1.0)


class MiniCPMModel(MiniCPMPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([MiniCPMDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = MiniCPMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, **kwargs):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        b, t = input_ids.shape
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=input_ids.device)[None].expand(b, t)
        h = self.embed_tokens(input_ids) * self.config.scale_emb
        cos, sin = _rope_cos_sin(self.config, position_ids, self.config.hidden_size // self.config.num_attention_heads)
        # True = masked: keys after the query (causal) and padded keys (2-D attention_mask, 0 = padding)
        q_pos = torch.arange(past, past + t, device=input_ids.device)
        k_pos = torch.arange(past + t, device=input_ids.device)
        mask = (k_pos[None, :] > q_pos[:, None])[None, None]
        if attention_mask is not None and attention_mask.dim() == 2:
            mask = mask | (attention_mask[:, None, None, -(past + t):] == 0)
            # a padding query would see no key at all (softmax of all -inf = NaN, which 0-weights cannot
            # cancel in p @ v): let every query see its own position; real tokens never attend to padding
            mask = mask & (k_pos[None, :] != q_pos[:, None])[None, None]
        for layer in self.layers:
            h = layer(h, cos, sin, mask, past_key_values if use_cache else None)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(h),
                                       past_key_values=past_key_values if use_cache else None)


class MiniCPMForCausalLM(MiniCPMPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.model = MiniCPMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new):
        self.lm_head = new

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, labels=None, logits_to_keep=0, **kwargs):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, use_cache=use_cache)
        h = out.last_hidden_state
        if logits_to_keep:  # generate() asks for the last position only
            h = h[:, -logits_to_keep:]
        logits = self.lm_head(h / (self.config.hidden_size / self.config.dim_model_base)).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values)
