"""Train the project's stand-in: a small MiniCPM with ternary QAT on the project's bilingual corpus.

    python -m bitcpm_validation.model.train_stand_in --out models/stand-in --seed 0

NOT BitCPM4: a few-million-parameter model trained by this project so that the report has real
outputs on machines without the real weights. Deterministic from the seed on a given machine and
thread count (torch.use_deterministic_algorithms, fixed threads, SentencePiece single-threaded).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import corpus
from .reference import MiniCPM, ReferenceModel
from .training_corpus import STAND_IN_DESCRIPTION, declare
from .ternary_qat import GROUP, check_ternary, export_state_dict, ternarize
from .tokenizer import FaithfulTokenizer
from .weights_kind import WEIGHTS_KEY
from .writer import corpus_sp_model, read_config_from_dict, small_config, sp_piece_count, write_model_dir

NOTE = ("STAND-IN trained by the bitcpm-validation project with ternary QAT on a tiny bilingual corpus; "
        "NOT openbmb/BitCPM4-0.5B and not derived from its weights.")

PROBES = [
    ("What is the capital of France?", False), ("What is 2+2?", False), ("Write a short poem about AI:", False),
    ("Hello, my name is", False), ("Translate to Chinese: Hello, how are you?", False),
    ("你好，请介绍一下你自己", False), ("北京有什么好玩的景点？", False), ("用中文写一首关于人工智能的诗", False),
    ("你好,请介绍一下你自己", False), ("北京有什么好玩的景点?", False),  # params/prompts.yaml spelling
    ("What is the capital of France?", True), ("What is 2+2?", True), ("北京有什么好玩的景点？", True),
    ("你好，请介绍一下你自己", True),
]

README = """# Stand-in model (NOT BitCPM4)

**This is a stand-in trained by the bitcpm-validation project, not openbmb/BitCPM4-0.5B.** It is not
derived from BitCPM4's or MiniCPM's weights. It exists so that the report, CI and the JupyterLab
demos have a model with real outputs where the real weights cannot be downloaded.

- Architecture: MiniCPM (the real config's keys, scales and LongRoPE factors), scaled down:
  hidden {hidden}, {layers} layers, {heads} query heads / {kv} KV heads (head_dim {hd}),
  intermediate {inter}, vocab {vocab} ({pieces} SentencePiece pieces + 8 added tokens).
  {params:,} parameters, {bytes:,} bytes of BF16 weights, tied embeddings (no lm_head.weight).
- Training: ternary QAT (absmean scale per group of {group} along the input dim, straight-through
  estimator; q,k,v,o,gate,up,down ternary; embeddings and norms dense), {steps} steps, batch {batch},
  AdamW lr {lr}, seed {seed}, on the project's own bilingual corpus
  (src/bitcpm_validation/model/corpus/: {pairs} prompt/answer pairs as raw completions and as ChatML
  chats, plus {texts} lines of text). Final training loss {loss:.4f}.
- Export: fake-quantized BF16 like BitCPM4: every projection weight is exactly code × scale per group
  (codes in {{-1, 0, 1}}, BF16-representable scales); checked after the cast.
- Layout: the real repository's (config.json without model_type + auto_map, configuration_minicpm.py,
  modeling_minicpm.py, tokenizer.model/json, tokenizer_config.json, special_tokens_map.json,
  added_tokens.json, generation_config.json, model.safetensors).
- Rebuild: `python -m bitcpm_validation.model.train_stand_in --out models/stand-in --seed {seed}`
  (took {secs:.0f} s on the machine that built it, {threads} threads).

It memorises a small corpus: it answers the project's probe prompts and little else.
"""


def build_sequences(tok: FaithfulTokenizer) -> list[list[int]]:
    seqs = []
    sp = tok.sp
    for p, a in corpus.pairs():
        seqs.append([tok.bos_id] + sp.encode(p) + sp.encode(a) + [sp.eos_id()])
        seqs.append(tok.encode_chat([{"role": "user", "content": p}]) + tok.encode(a.strip() + "<|im_end|>", add_bos=False))
    for t in corpus.texts():
        seqs.append([tok.bos_id] + sp.encode(t) + [sp.eos_id()])
    return seqs


def batches(seqs, batch, rng):
    idx = list(range(len(seqs)))
    while True:
        rng.shuffle(idx)
        for i in range(0, len(idx) - batch + 1, batch):
            yield [seqs[j] for j in idx[i:i + batch]]


def collate(b):
    n = max(len(s) for s in b)
    x = torch.zeros(len(b), n, dtype=torch.long)
    m = torch.zeros(len(b), n, dtype=torch.bool)
    for i, s in enumerate(b):
        x[i, :len(s)] = torch.tensor(s)
        m[i, :len(s)] = True
    return x, m


def train(out: str | Path, seed: int = 0, steps: int = 500, batch: int = 32, lr: float = 3e-3,
          threads: int = 1, log_every: int = 25, quiet: bool = False, sp_vocab: int = 2000) -> dict:
    t0 = time.time()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sp_path = corpus_sp_model(out / "tokenizer.model", sp_vocab)
    n = sp_piece_count(sp_path)
    cfg = small_config(vocab_size=n + 8, eos_token_id=[2, n])
    cfg["_name_or_path"] = "bitcpm-validation/stand-in"
    cfg["stand_in_note"] = NOTE
    cfg[WEIGHTS_KEY] = "stand-in"  # the directory declares what it is (model.weights_kind); no effect on the weights
    # Tokenizer files first (the faithful tokenizer reads them).
    write_model_dir(out, cfg, None, sp_model=sp_path)
    tok = FaithfulTokenizer(out)
    seqs = build_sequences(tok)

    full = read_config_from_dict(cfg)
    model = MiniCPM(full)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.02)
    ternarize(model, GROUP)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    it = batches(seqs, min(batch, len(seqs)), rng)
    losses = []
    for step in range(steps):
        x, m = collate(next(it))
        logits = model(x)
        tgt = x[:, 1:].masked_fill(~m[:, 1:], -100)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if not quiet and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:4d} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s", flush=True)
    sd = export_state_dict(model, GROUP)
    for k, v in sd.items():
        if k.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            r = check_ternary(v, GROUP)
            if not r["ok"]:
                raise AssertionError(f"{k} is not ternary per group after the BF16 cast: {r}")
    secs = time.time() - t0
    n_params = sum(v.numel() for v in sd.values())
    write_model_dir(out, cfg, sd, sp_model=sp_path, dtype="bfloat16", readme=README.format(
        hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"], heads=cfg["num_attention_heads"],
        kv=cfg["num_key_value_heads"], hd=cfg["hidden_size"] // cfg["num_attention_heads"],
        inter=cfg["intermediate_size"], vocab=cfg["vocab_size"], pieces=n, params=n_params, bytes=n_params * 2,
        group=GROUP, steps=steps, batch=batch, lr=lr, seed=seed, pairs=len(corpus.pairs()), texts=len(corpus.texts()),
        loss=sum(losses[-10:]) / len(losses[-10:]), secs=secs, threads=threads))
    # say what it was trained on: graders do not judge it on prompts from its corpus (issue 10.5)
    declare(out, STAND_IN_DESCRIPTION, module=corpus.__name__)
    return {"out": str(out), "seconds": secs, "final_loss": losses[-1], "losses": losses, "parameters": n_params}


def probe(out: str | Path, max_new_tokens: int = 48) -> list[dict]:
    """Greedy answers of the exported model (reference implementation, fp32 on the BF16 weights)."""
    ref = ReferenceModel.from_pretrained(out)
    tok = FaithfulTokenizer(out)
    rows = []
    for p, chat in PROBES:
        ids = tok.encode_chat([{"role": "user", "content": p}]) if chat else tok.encode(p)
        new, _ = ref.greedy(ids, max_new_tokens)
        rows.append({"prompt": p, "chat": chat, "ids": new, "text": tok.decode(new)})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/stand-in")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-probe", action="store_true")
    a = ap.parse_args(argv)
    r = train(a.out, a.seed, a.steps, a.batch, a.lr, a.threads)
    print(f"trained in {r['seconds']:.1f} s, final loss {r['final_loss']:.4f}, {r['parameters']:,} parameters -> {r['out']}")
    if not a.no_probe:
        for row in probe(a.out):
            print(json.dumps({"prompt": row["prompt"], "chat": row["chat"], "answer": row["text"]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
