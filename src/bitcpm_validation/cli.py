"""Command line: python -m bitcpm_validation run|render|summary|env|check-params|publish|verify.

    run    [--params P] [--model PATH|HUB_ID[@REV]] [--only CH ...] [--resume RUN_DIR] [--run-dir DIR] [--no-render]
           [--no-shared-engine]   every chapter starts its own engine (default: one shared `vllm serve`)
           [--allow-platform-mismatch]  go on where the profile's platform is not this host's (run.json, page one say so)
    render RUN_DIR [--lang zh|en|both] [--no-pdf]
    summary RUN_DIR [--lang en|zh]  print the check matrix and key metrics
    env                      print the environment probe as JSON
    check-params P ...       validate params files (one-line errors)
    publish [--runs runs] [--site site]   static site of runs with MANIFEST.sha256 (make publish)
    verify [SITE]            check a published site against its manifest (exit 1 on any mismatch)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from bitcpm_validation.params import ParamsError, load_params
from bitcpm_validation.paths import PROJECT_ROOT


def _cmd_run(a: argparse.Namespace) -> int:
    from bitcpm_validation.report import runner
    from bitcpm_validation.report.render import render

    run_dir = a.resume or a.run_dir
    params = a.params
    if a.resume and not params:
        p = Path(a.resume) / "run.json"
        try:
            params = json.loads(p.read_text(encoding="utf-8"))["params_path"]
        except (OSError, ValueError, KeyError):
            params = str(Path(a.resume) / "params.yaml")
    params = params or "params/default.yaml"
    try:
        oc = runner.run(params, run_dir=run_dir, resume=bool(a.resume), only=a.only or None,
                        check_model=not a.no_model_check, timeout_s=a.cell_timeout,
                        model=a.model, shared=not a.no_shared_engine,
                        allow_platform_mismatch=a.allow_platform_mismatch)
    except (ParamsError, runner.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if oc.interrupted:
        return oc.exit_code
    if not a.no_render:
        try:
            r = render(oc.run_dir)
        except Exception as e:  # noqa: BLE001
            print(f"error: render failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 3
        print("report: " + "  ".join(str(p) for p in r.html.values()))
    if oc.run_failed:
        print(f"{len(oc.run_failed)} chapter(s) failed: {', '.join(oc.run_failed)}; "
              f"re-run them with: make report RESUME={oc.run_dir}", file=sys.stderr)
    return oc.exit_code


def _cmd_render(a: argparse.Namespace) -> int:
    from bitcpm_validation.report.render import render

    try:
        render(a.run_dir, lang=a.lang, pdf=not a.no_pdf)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_summary(a: argparse.Namespace) -> int:
    from bitcpm_validation.report import matrix as M
    from bitcpm_validation.report import summary as S
    from bitcpm_validation.report import verdicts as V

    rows = M.check_matrix(a.run_dir)
    print(S.matrix_markdown(rows, a.lang))
    print()
    print(S.metrics_markdown(M.key_metrics(a.run_dir), a.lang))
    print()
    print(S.counts_line(V.verdict_counts(rows)))
    return 0


def _cmd_env(a: argparse.Namespace) -> int:
    from bitcpm_validation.chapters.environment import probe

    print(json.dumps(probe(), ensure_ascii=False, indent=2))
    return 0


def _cmd_check(a: argparse.Namespace) -> int:
    rc = 0
    for p in a.paths:
        try:
            load_params(p)
            print(f"ok   {p}")
        except ParamsError as e:
            print(f"error: {e}", file=sys.stderr)
            rc = 2
    return rc


def _cmd_prefetch_datasets(a: argparse.Namespace) -> int:
    """load_dataset for every config the profile's accuracy tasks need (a host with network; HF_ENDPOINT)."""
    from bitcpm_validation.engine import datasets as D

    try:
        p = load_params(a.params)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    hub_tasks = [t for t in p.accuracy.tasks if t not in D.local_task_names()]
    if not hub_tasks:
        print(f"{a.params}: no hub dataset to fetch (accuracy.tasks: {', '.join(p.accuracy.tasks)})")
        return 0
    states = D.prefetch(D.task_needs(hub_tasks), dict(p.accuracy.datasets))
    bad = [s for s in states.values() if s.status != "ok"]
    print(f"{len(states) - len(bad)} of {len(states)} dataset(s) stored in {D.cache_dir()}"
          + ("; copy that folder to the run host (HF_DATASETS_CACHE)" if len(bad) < len(states) else ""))
    return 1 if bad else 0


def _cmd_publish(a: argparse.Namespace) -> int:
    from bitcpm_validation.report import publish as P

    try:
        site, entries, n = P.build_site(a.runs, a.site)
    except (OSError, P.PublishError) as e:
        print(f"error: publish failed: {e}", file=sys.stderr)
        return 2
    print(f"site {site}/index.html: {len(entries)} run(s), {n} file(s) in {P.MANIFEST}")
    print(f"verify: cd {site} && sha256sum -c {P.MANIFEST}   (or: python -m bitcpm_validation verify {site})")
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from bitcpm_validation.report import publish as P

    try:
        problems = P.verify(a.site)
    except P.PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"FAILED {p}", file=sys.stderr)
    if problems:
        print(f"error: {len(problems)} problem(s) in {a.site}", file=sys.stderr)
        return 1
    n = sum(1 for ln in (Path(a.site) / P.MANIFEST).read_text(encoding="utf-8").splitlines() if ln.strip())
    print(f"ok: {n} file(s) match {Path(a.site) / P.MANIFEST}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitcpm_validation", description="BitCPM4-0.5B validation report")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute the chapter notebooks into runs/<id>/ and render the report")
    r.add_argument("--params", help="params profile (default params/default.yaml)")
    r.add_argument("--only", nargs="+", metavar="CHAPTER", help="run only these chapters (id, name or number)")
    r.add_argument("--resume", metavar="RUN_DIR", help="re-run the failed / missing chapters of an existing run")
    r.add_argument("--run-dir", help="write into this run directory instead of a new runs/<timestamp>-<profile>")
    r.add_argument("--no-render", action="store_true", help="run the chapters only")
    r.add_argument("--model", metavar="PATH_OR_HUB_ID",
                   help="model.path for this run: a local directory or a hub id[@revision] (make report MODEL=...)")
    r.add_argument("--no-model-check", action="store_true", help="start even if model.path does not exist")
    r.add_argument("--no-shared-engine", action="store_true",
                   help="no shared vllm serve for the run: every chapter starts its own engine (slower)")
    r.add_argument("--allow-platform-mismatch", action="store_true",
                   help="run even where the profile's platform (npu, cuda, cpu) is not the one vLLM detects here; "
                        "run.json records it and page one says so (make report ALLOW_PLATFORM_MISMATCH=1)")
    r.add_argument("--cell-timeout", type=float, default=None, help="seconds per notebook cell (default none)")
    r.set_defaults(fn=_cmd_run)
    d = sub.add_parser("render", help="render report.<lang>.html / report.<lang>.pdf (zh, en) and report.md of a run")
    d.add_argument("run_dir")
    d.add_argument("--lang", choices=["zh", "en", "both"])
    d.add_argument("--no-pdf", action="store_true")
    d.set_defaults(fn=_cmd_render)
    s = sub.add_parser("summary", help="print a run's check matrix and key metrics")
    s.add_argument("run_dir")
    s.add_argument("--lang", choices=["en", "zh"], default="en")
    s.set_defaults(fn=_cmd_summary)
    e = sub.add_parser("env", help="print the environment probe")
    e.set_defaults(fn=_cmd_env)
    c = sub.add_parser("check-params", help="validate params files")
    c.add_argument("paths", nargs="+")
    c.set_defaults(fn=_cmd_check)
    pf = sub.add_parser("prefetch-datasets", help="store the datasets a profile's accuracy tasks need in the datasets cache")
    pf.add_argument("params")
    pf.set_defaults(fn=_cmd_prefetch_datasets)
    pb = sub.add_parser("publish", help="build a static site of runs (index, reports, SHA-256 manifest)")
    pb.add_argument("--runs", default=str(PROJECT_ROOT / "runs"), help="folder of run directories (default runs/)")
    pb.add_argument("--site", default=str(PROJECT_ROOT / "site"), help="output folder (default site/)")
    pb.set_defaults(fn=_cmd_publish)
    vf = sub.add_parser("verify", help="check a published site against its MANIFEST.sha256")
    vf.add_argument("site", nargs="?", default=str(PROJECT_ROOT / "site"))
    vf.set_defaults(fn=_cmd_verify)
    from bitcpm_validation.report import compare as _compare  # compare RUN_DIR RUN_DIR ... [--out DIR]: runs side by side

    _compare.add_cli(sub)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
