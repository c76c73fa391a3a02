"""Where an offline engine's start goes, in one process or in vLLM's own: alternating fresh starts, phases each.

    .venv/bin/python scripts/engine_start_phases.py                  # A B A B: multiprocess, in-process, ...
    .venv/bin/python scripts/engine_start_phases.py --runs 3 --params params/default.yaml --dtype float32
    .venv/bin/python scripts/engine_start_phases.py --once in-process    # one start in this process, as JSON

Each start runs in a fresh Python process (as a notebook kernel would: vLLM not yet imported) through
engine.offline.start(fresh=True) on the profile's model, into a scratch run directory, and answers one greedy
request. The mode is forced with VLLM_ENABLE_V1_MULTIPROCESSING (engine.startup.choose_mode obeys it). On a
shared host absolute times drift: compare the ratio of the two modes' medians over alternating runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {"multiprocess": "1", "in-process": "0"}


def one_start(mode: str, params_path: str, run_dir: Path, dtype: str | None = None) -> dict:
    """A fresh start in this process, then a second one (a chapter's restart: vLLM already imported):
    {mode, start_s (import to ready), offline_start_s, phases, restart_s, restart_phases, first_tokens}."""
    t0 = time.monotonic()
    from bitcpm_validation.engine import offline, starts
    from bitcpm_validation.params import load_params

    params = load_params(params_path)
    (run_dir / "evidence").mkdir(parents=True, exist_ok=True)
    overrides = {"dtype": dtype} if dtype else {}
    tokens, start_s = [], 0.0
    for why in ("start-up measurement", "restart"):
        eng = offline.start(params, run_dir / "evidence" / "00_start.log", fresh=True, why=why, **overrides)
        if not tokens:
            start_s = time.monotonic() - t0
        try:
            tokens.append(eng.generate_ids([[1, 100, 200, 300]], max_tokens=4)[0])
        finally:
            eng.close()
    first, again = starts.load(run_dir)[-2:]
    return {"mode": first.mode, "start_s": round(start_s, 2), "offline_start_s": first.seconds,
            "phases": first.phases, "restart_s": again.seconds, "restart_phases": again.phases,
            "first_tokens": tokens[0], "restart_same_tokens": tokens[0] == tokens[1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params/default.yaml")
    ap.add_argument("--dtype", help="engine dtype instead of the profile's (e.g. float32)")
    ap.add_argument("--runs", type=int, default=2, help="alternating pairs (multiprocess, in-process) to time")
    ap.add_argument("--once", choices=sorted(MODES), help="one start in this process (the mode must be set in "
                                                           "VLLM_ENABLE_V1_MULTIPROCESSING), printed as JSON")
    args = ap.parse_args()
    if args.once:
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") != MODES[args.once]:
            sys.exit(f"--once {args.once} needs VLLM_ENABLE_V1_MULTIPROCESSING={MODES[args.once]} in the environment")
        with tempfile.TemporaryDirectory(prefix="engine-start-") as tmp:
            print(json.dumps(one_start(args.once, args.params, Path(tmp), args.dtype)), flush=True)
        return 0
    times: dict[str, list[float]] = {m: [] for m in MODES}
    restarts: dict[str, list[float]] = {m: [] for m in MODES}
    tokens: dict[str, list] = {}
    for i in range(args.runs):
        for mode, flag in MODES.items():
            env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": flag}
            argv = [sys.executable, __file__, "--once", mode, "--params", args.params]
            proc = subprocess.run(argv + (["--dtype", args.dtype] if args.dtype else []), env=env,
                                  capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                sys.exit(f"{mode} start {i + 1} failed (rc {proc.returncode}): {proc.stderr.strip()[-600:]}")
            res = json.loads(lines[-1])
            times[mode].append(res["start_s"])
            restarts[mode].append(res["restart_s"])
            tokens.setdefault(mode, res["first_tokens"])
            for label, secs, phases in (("start", res["start_s"], res["phases"]),
                                        ("restart", res["restart_s"], res["restart_phases"])):
                text = " · ".join(f"{k} {v:.1f}" for k, v in phases.items())
                print(f"run {i + 1} {mode:12s} {label:7s} {secs:6.1f} s   [{text}]", flush=True)
            if not res["restart_same_tokens"]:
                print(f"run {i + 1} {mode}: the restart answered other tokens", flush=True)
    for label, got in (("fresh process, import to ready", times), ("restart in the same process", restarts)):
        med = {m: statistics.median(v) for m, v in got.items()}
        print(f"median {label}: multiprocess {med['multiprocess']:.1f} s, in-process {med['in-process']:.1f} s; "
              f"ratio in-process / multiprocess = {med['in-process'] / med['multiprocess']:.2f}")
    print(f"same first tokens: {tokens['multiprocess'] == tokens['in-process']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
