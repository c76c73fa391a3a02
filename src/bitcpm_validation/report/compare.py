"""Compare runs: `make compare RUNS="runs/a runs/b ..."` (python -m bitcpm_validation compare runs/a runs/b).

Holds runs made on different hosts against each other (an Ascend run against a CUDA run and against
the CPU reference): the environments side by side, agreement tables for every pair of runs from
their precision baseline bundles (results/06_precision.json: data.bundle and data.reference_bundle),
and the key metrics of every chapter as ratios to the first run. Writes compare.html (rendered with
the report's template, offline) and compare.md, one file per language (compare.en.*, compare.zh.*), and
compare.json into runs/compare-<timestamp>/ or --out.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from bitcpm_validation.model import agreement as A
from bitcpm_validation.report import items, results as R
from bitcpm_validation.paths import PROJECT_ROOT
from bitcpm_validation.report.display import T, in_lang
from bitcpm_validation.report.textsafe import md_escape, md_table

ENV_KEYS = ["device", "device_kind", "platform", "dtype", "mode", "os", "arch", "python", "vllm", "vllm_ascend",
            "torch", "torch_npu", "cann", "transformers"]


def summary_row(label: str, s: dict[str, Any]) -> list[Any]:
    """An agreement table row: label, then model.agreement.summary_cells (the columns of agreement_headers)."""
    return [label, *A.summary_cells(s)]


class CompareError(ValueError):
    pass


def _resolve(p: str | Path) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() or q.exists() else PROJECT_ROOT / q


def load_run(path: str | Path) -> dict[str, Any]:
    """What a run offers for comparison; a missing precision bundle is recorded as `bundle_error`."""
    d = _resolve(path)
    if not d.is_dir():
        raise CompareError(f"{path}: not a run directory")
    run: dict[str, Any] = {"name": d.name, "path": str(d), "env": {}, "bundles": None, "bundle_error": None,
                           "metrics": {}, "profile": None}
    rj = d / "run.json"
    if rj.is_file():
        try:
            info = json.loads(rj.read_text(encoding="utf-8"))
            run["profile"] = info.get("profile")
        except (OSError, json.JSONDecodeError):
            pass
    try:
        results = R.load_run(d)
    except R.ResultsError as e:
        results = {}
        run["results_error"] = str(e)
    for cid, res in results.items():
        run["profile"] = run["profile"] or res.profile
        for m in res.metrics:
            if m.key and not m.timing:
                run["metrics"][f"{cid}:{m.id}"] = {"value": m.value, "unit": m.unit, "name_en": m.name_en,
                                                   "name_zh": m.name_zh}
    try:
        b = A.load_run_bundles(d)
        run["bundles"] = b
        run["env"].update(b["engine"].get("environment") or {})
        run["env"].update({k: v for k, v in (b["engine"].get("settings") or {}).items() if v is not None})
        run["model"] = b["engine"].get("model") or {}
    except A.BaselineError as e:
        run["bundle_error"] = str(e)
    env = results.get("01_environment")
    if env is not None:
        facts = env.data.get("facts") or {}
        dev = facts.get("device") or {}
        run["env"].setdefault("device", dev.get("name"))
        run["env"].setdefault("device_kind", dev.get("kind"))
        for k, v in (facts.get("versions") or env.data.get("versions") or {}).items():
            if v and k in ENV_KEYS:
                run["env"].setdefault(k, v)
        for k in ("os", "arch", "python"):
            if facts.get(k):
                run["env"].setdefault(k, facts[k])
    return run


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def compare_runs(paths: Sequence[str | Path]) -> dict[str, Any]:
    if len(paths) < 2:
        raise CompareError("compare needs at least two run directories (RUNS=\"runs/a runs/b\")")
    runs = [load_run(p) for p in paths]
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):  # same basename in different folders
        for i, r in enumerate(runs):
            r["name"] = f"{i + 1}:{r['name']}"
    pairs = []
    for a, b in itertools.combinations(runs, 2):
        row: dict[str, Any] = {"a": a["name"], "b": b["name"]}
        if a["bundles"] and b["bundles"]:
            c = A.compare_bundles(a["bundles"]["engine"], b["bundles"]["engine"])
            row["engine"] = c["summary"]
            row["unmatched"] = c["unmatched"]
            if a["bundles"].get("reference") and b["bundles"].get("reference"):
                row["reference"] = A.compare_bundles(a["bundles"]["reference"], b["bundles"]["reference"])["summary"]
            row["same_model"] = (a.get("model") or {}).get("weights_sha256") == (b.get("model") or {}).get("weights_sha256")
        else:
            row["error"] = a["bundle_error"] or b["bundle_error"]
        row["accuracy"] = items.paired_runs(Path(a["path"]), Path(b["path"]))  # benchmark items, paired
        pairs.append(row)
    self_ref = {}
    for r in runs:
        if r["bundles"] and r["bundles"].get("reference"):
            self_ref[r["name"]] = A.compare_bundles(r["bundles"]["reference"], r["bundles"]["engine"])["summary"]
    keys = sorted({k for r in runs for k in r["metrics"]})
    metrics = []
    for k in keys:
        first = runs[0]["metrics"].get(k, {}).get("value")
        vals, ratios = [], []
        meta = next(r["metrics"][k] for r in runs if k in r["metrics"])
        for r in runs:
            v = r["metrics"].get(k, {}).get("value")
            vals.append(v)
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            fnum = isinstance(first, (int, float)) and not isinstance(first, bool)
            ratios.append(v / first if num and fnum and first else None)
        metrics.append({"id": k, "name_en": meta["name_en"], "name_zh": meta["name_zh"], "unit": meta["unit"],
                        "values": vals, "ratios": ratios})
    return {"runs": [{k: r.get(k) for k in ("name", "path", "profile", "env", "bundle_error", "model")} for r in runs],
            "pairs": pairs, "engine_vs_own_reference": self_ref, "metrics": metrics,
            "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


WORDS = {  # compare's own words, one language per file
    "title": T("运行对比", "Run comparison"), "runs": T("运行", "Runs"), "envs": T("环境", "Environments"),
    "item": T("项目", "Item"), "no_bundle": T("无基线包", "No baseline bundle"),
    "pairs": T("两两一致性", "Agreement for every pair"),
    "pairs_note": T("P 为第一个运行（基线），Q 为第二个；在 P 的序列上教师强制；KL(P‖Q) 取 P 的 top-k 并重新归一化，仅在 Q 列出全部这些词元的位置计算（其余为 n/a，从不填补）。",
                    "P = first run (baseline), Q = second; teacher-forced on P's sequences. KL(P‖Q) over P's top-k, "
                    "renormalised, at the positions where Q lists all of them (n/a elsewhere: never filled)."),
    "engines": T("引擎", "engines"), "different": T("权重不同", "DIFFERENT weights"),
    "references": T("fp32 参考实现", "fp32 references"), "own_ref": T("引擎对比其 fp32 参考实现", "engine vs its fp32 reference"),
    "metrics": T("关键指标", "Key metrics"), "metric": T("指标", "Metric"), "unit": T("单位", "Unit"),
    "ratios": T("比值以 `{first}` 为 1。", "Ratios relative to `{first}`."),
    "agreement_headers": [T("对比", "Comparison"), T("top-1 一致率", "top-1 agreement"), T("最大 |Δ 对数概率|", "max |Δ logprob|"),
                          T("平均 |Δ 对数概率|", "mean |Δ logprob|"), T("平均 KL", "mean KL"), T("KL 基础", "KL basis"), T("完全一致长度", "exact match"),
                          T("接近", "close")],
}
WORDS.update({
    "accuracy": T("精度：逐题配对", "Accuracy, item by item"),
    "accuracy_note": T("同一批题目（子任务、doc_id、过滤器相同，且题面 / 提示 / 答案哈希一致）上，第二个运行相对第一个的差（分）与 95% 区间；精确 McNemar 检验（不一致题目上的二项检验）。",
                       "On the same items (subtask, doc_id and filter equal, doc / prompt / target hashes equal): the second "
                       "run minus the first, in points, with its 95 % interval; exact McNemar test (binomial test on the "
                       "discordant items)."),
    "accuracy_headers": [T("对比", "Comparison"), T("任务", "Task"), T("配对题数", "paired items"), T("拒绝", "refused"),
                         T("差（分）", "difference (points)"), T("多对 / 多错", "won / lost"), "p (McNemar)"],
})
LANGS = ("en", "zh")


def to_markdown(c: dict[str, Any], lang: str = "en") -> str:
    """The comparison in one language (technical terms and run names as they are)."""
    w = lambda k: in_lang(WORDS[k], lang)  # noqa: E731
    sep = "：" if lang == "zh" else ": "
    runs = c["runs"]
    names = [r["name"] for r in runs]
    out = [f"# {w('title')}", "",
           w("runs") + sep + ", ".join(f"`{md_escape(n)}` ({md_escape(r['path'])})" for n, r in zip(names, runs)), ""]
    out += [f"## {w('envs')}", ""]
    keys = [k for k in ENV_KEYS if any(r["env"].get(k) for r in runs)]
    rows = [[k] + [_fmt(r["env"].get(k)) for r in runs] for k in keys]
    rows.append(["profile"] + [_fmt(r.get("profile")) for r in runs])
    rows.append(["weights sha256"] + [_fmt((r.get("model") or {}).get("weights_sha256")) for r in runs])
    out += [md_table([w("item")] + names, rows), ""]
    errs = [(r["name"], r["bundle_error"]) for r in runs if r["bundle_error"]]
    if errs:
        out += [f"**{w('no_bundle')}{sep}**" + "; ".join(f"{md_escape(n)}: {md_escape(e)}" for n, e in errs), ""]
    out += [f"## {w('pairs')}", "", w("pairs_note"), ""]
    rows = []
    for p in c["pairs"]:
        if "error" in p:
            rows.append([f"{p['a']} vs {p['b']}", p["error"]] + [""] * (len(WORDS["agreement_headers"]) - 2))
            continue
        what = w("engines") + ("" if p["same_model"] else ", " + w("different"))
        rows.append(summary_row(f"{p['a']} vs {p['b']} ({what})", p["engine"]))
        if "reference" in p:
            rows.append(summary_row(f"{p['a']} vs {p['b']} ({w('references')})", p["reference"]))
    for n, s in c["engine_vs_own_reference"].items():
        rows.append(summary_row(f"{n}{sep}{w('own_ref')}", s))
    out += [md_table([in_lang(h, lang) for h in WORDS["agreement_headers"]], rows), ""]
    acc = [[f"{p['a']} vs {p['b']}", md_escape(r["task"]), r["n"], r["refused"],
            f"{r['diff_points']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]" if "diff_points" in r else "—",
            f"{r['b_won']} / {r['b_lost']}" if "b_won" in r else "—", _fmt(r.get("p_two_sided"))]
           for p in c["pairs"] for r in p.get("accuracy") or []]
    if acc:
        out += [f"## {w('accuracy')}", "", w("accuracy_note"), "",
                md_table([in_lang(h, lang) for h in WORDS["accuracy_headers"]], acc), ""]
    out += [f"## {w('metrics')}", "", w("ratios").format(first=md_escape(names[0])), ""]
    rows = []
    for m in c["metrics"]:
        name = m["name_zh"] if lang == "zh" and m.get("name_zh") else m["name_en"]
        rows.append([name, m["unit"]] + [_fmt(v) for v in m["values"]]
                    + [_fmt(r) if r is not None else "—" for r in m["ratios"][1:]])
    out += [md_table([w("metric"), w("unit")] + names + [f"{n} / {names[0]}" for n in names[1:]], rows), ""]
    return "\n".join(out)


def render(c: dict[str, Any], out_dir: Path, pdf: bool = False) -> dict[str, Path]:
    """compare.json, and per language compare.<lang>.md and compare.<lang>.html (the report template,
    offline) in out_dir. Keys: json, md / html (English), md_zh / html_zh, pdf / pdf_zh."""
    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    out_dir.mkdir(parents=True, exist_ok=True)
    R.write_atomic(out_dir / "compare.json", json.dumps(R.jsonable(c), ensure_ascii=False, indent=2) + "\n")
    files = {"json": out_dir / "compare.json"}
    for lang in LANGS:
        suffix = "" if lang == "en" else f"_{lang}"
        md = to_markdown(c, lang)
        R.write_atomic(out_dir / f"compare.{lang}.md", md + "\n")
        files["md" + suffix] = out_dir / f"compare.{lang}.md"
        try:
            from bitcpm_validation.report.render import html_report, print_pdf

            sections = md.split("\n## ")
            cells = [new_markdown_cell(sections[0])] + [new_markdown_cell("## " + s) for s in sections[1:]]
            nb = new_notebook(cells=cells, metadata={"language_info": {"name": "python"}})
            other = "zh" if lang == "en" else "en"
            html = html_report(nbformat.from_dict(nb), f"BitCPM4-0.5B · {in_lang(WORDS['title'], lang)}", lang,
                               (f"compare.{other}.html", "中文" if other == "zh" else "English"))
            R.write_atomic(out_dir / f"compare.{lang}.html", html)
            files["html" + suffix] = out_dir / f"compare.{lang}.html"
            if pdf and print_pdf(files["html" + suffix], out_dir / f"compare.{lang}.pdf") is None:
                files["pdf" + suffix] = out_dir / f"compare.{lang}.pdf"
        except Exception as e:  # noqa: BLE001  the markdown and JSON stand on their own
            files["html_error" + suffix] = Path(f"{type(e).__name__}: {e}")
    return files


def default_out_dir() -> Path:
    ts = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return PROJECT_ROOT / "runs" / f"compare-{ts}"


def main(runs: Sequence[str], out: Optional[str] = None, pdf: bool = False) -> int:
    try:
        c = compare_runs(runs)
    except CompareError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    out_dir = Path(out) if out else default_out_dir()
    files = render(c, out_dir, pdf=pdf)
    for k, p in files.items():
        print(f"{k}: {p}")
    return 0


def _cmd(a: argparse.Namespace) -> int:
    return main(a.runs, a.out, a.pdf)


def add_cli(sub: Any) -> None:
    """Register `compare` on the CLI's subparsers (cli.py calls this)."""
    p = sub.add_parser("compare", help="compare runs: environments, agreement for every pair, key-metric ratios")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="output directory (default runs/compare-<timestamp>)")
    p.add_argument("--pdf", action="store_true", help="also print compare.pdf with headless Chromium")
    p.set_defaults(fn=_cmd)
