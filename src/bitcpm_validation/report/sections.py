"""The original document's sections the summary adds after the check matrix (issue 20.7), each built from the
run's own files, never written by hand:

    probes = probe_summary(run_dir, rows)       # every probe of chapters 03 / 05: prompt, verdict, why
    cmds = reproducing_commands(run_dir)        # make report with this run's params, and the commands the
                                                # chapters ran: vllm serve, vllm bench, lm_eval
    files = evidence_index(run_dir)             # every evidence and artifact file, with what it holds
    log = change_log(run_dir, rows)             # against the previous run of the same profile (report.compare)

Each has a `*_table` that gives (headers, rows) for report.display.show_table; texts are T (one language at a
time). Prompts and commands are data: show them with `verbatim_cols`.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bitcpm_validation.report import results as R
from bitcpm_validation.report.display import T
from bitcpm_validation.report.matrix import MatrixRow, check_matrix, chapter_results, run_info, short

# check families that judge one probe each: (chapter, family id)
PROBE_FAMILIES = (("03_inference", "probe"), ("05_chinese", "zh"))


# -- per-probe summary ----------------------------------------------------------------------------------------
@dataclass
class ProbeRow:
    chapter: str
    id: str
    prompt: str
    status: str
    why: T

    @property
    def mark(self) -> str:
        return R.STATUS_MARK[self.status]


def probe_summary(run_dir: str | Path, rows: list[MatrixRow]) -> list[ProbeRow]:
    """One row per judged probe of the run (chapters 03 and 05), its prompt from the chapter's data["outputs"]."""
    results = chapter_results(run_dir)
    prompts: dict[tuple[str, str], str] = {}
    for cid, _ in PROBE_FAMILIES:
        res = results.get(cid)
        for o in (res.data.get("outputs") or []) if res is not None else []:
            if isinstance(o, dict) and o.get("id") is not None:
                prompts[(cid, str(o["id"]))] = str(o.get("prompt") or "")
    out = []
    for r in rows:
        if r.kind == "check" and (r.chapter, r.base_id) in PROBE_FAMILIES and ":" in r.check_id:
            item = r.check_id.split(":", 1)[1]
            out.append(ProbeRow(r.chapter, item, prompts.get((r.chapter, item), ""), r.status, r.reason_t))
    return out


def _template(p: ProbeRow, text: str, placeholder: str = "…") -> str:
    """A reason with the probe's id (what varies from probe to probe) replaced by `placeholder`."""
    return text.replace(p.id, placeholder) if len(p.id) >= 3 else text  # a short id could be any word


def probe_table(probes: list[ProbeRow], limit: int = 220) -> tuple[list[T], list[list[Any]]]:
    """(headers, rows: chapter, probes, verdict, why). Probes of one chapter with the same verdict and a
    reason that differs only in the probe's id share one row that lists them, the id in the reason read as
    "each probe" (issue 20.2: never fifteen copies of one sentence); a would-be grade in the reason stays, so
    probes that would grade differently keep apart. The prompts are in chapters 03 / 05 and the results."""
    groups: dict[tuple[str, str, str], list[ProbeRow]] = {}
    for p in probes:
        groups.setdefault((p.chapter, p.status, _template(p, p.why.en)), []).append(p)
    headers = [T("章节", "Chapter"), T("探针", "Probes"), T("结论", "Verdict"), T("原因", "Why")]
    body = []
    for (chapter, _, _), group in groups.items():
        first = group[0]
        if len(group) == 1:
            why = T(short(first.why.zh, limit // 2 + 5), short(first.why.en, limit))
        else:
            # the Chinese text sets an id off with spaces: "每个探针 的" keeps no gap
            zh = re.sub(r"每个探针 (?=[\u3400-\u9fff])", "每个探针", _template(first, first.why.zh, "每个探针"))
            why = T(short(zh, limit // 2 + 5), short(_template(first, first.why.en, "each probe"), limit))
        body.append([chapter.split("_", 1)[0], ", ".join(p.id for p in group), first.mark, why])
    return headers, body


# -- reproducing commands ---------------------------------------------------------------------------------------
@dataclass
class Command:
    what: T
    command: str
    chapter: str  # "" for the whole run


def _shown_path(p: Path) -> str:
    """A path as a reader types it: relative to the project root where it lies inside."""
    from bitcpm_validation.paths import PROJECT_ROOT

    try:
        return Path(p).resolve().relative_to(PROJECT_ROOT.resolve()).as_posix()
    except ValueError:
        return str(p)


def _first(*values: Any) -> Optional[str]:
    return next((str(v) for v in values if isinstance(v, str) and v.strip()), None)


def reproducing_commands(run_dir: str | Path) -> list[Command]:
    """The commands that reproduce this run: `make report` with the run's params file (and the model it
    resolved), then the ones its chapters ran, as they recorded them (built from the run's params and engine
    kwargs by engine.server / chapters.performance / chapters.accuracy): `vllm serve`, `vllm bench serve`,
    `vllm bench throughput`, one `lm_eval` per task."""
    run_dir = Path(run_dir)
    info = run_info(run_dir)
    out: list[Command] = []
    saved = run_dir / "params.yaml"  # the run's params as resolved (model.path included): the run again
    params = _shown_path(saved) if saved.is_file() else info.get("params_path")
    if params:
        out.append(Command(T("整份报告（本次运行的参数）", "the whole report (this run's parameters)"),
                           f"make report PARAMS={shlex.quote(_shown_path(Path(params)))}", ""))
    res = chapter_results(run_dir)
    serving, perf, acc = res.get("08_serving"), res.get("07_performance"), res.get("09_accuracy")
    serve = _first(((serving.data.get("server") or {}) if serving else {}).get("command"),
                   perf.data.get("server_command") if perf else None)
    if serve:
        out.append(Command(T("服务（`vllm serve`）", "the server (vllm serve)"), serve,
                           "08_serving" if serving and (serving.data.get("server") or {}).get("command") else "07_performance"))
    if perf is not None:
        sweep = [s for s in perf.data.get("serve") or [] if isinstance(s, dict) and s.get("command")]
        if sweep:
            out.append(Command(T(f"基准测试（`vllm bench serve`，并发 {sweep[0].get('concurrency')}）",
                                 f"benchmark (vllm bench serve, concurrency {sweep[0].get('concurrency')})"),
                               str(sweep[0]["command"]), "07_performance"))
        thr = _first((perf.data.get("throughput") or {}).get("command"))
        if thr:
            out.append(Command(T("离线吞吐（`vllm bench throughput`）", "offline throughput (vllm bench throughput)"), thr,
                               "07_performance"))
    for t in (acc.data.get("tasks") or []) if acc is not None else []:
        if isinstance(t, dict) and _first(t.get("command")):
            out.append(Command(T(f"准确率：`{t.get('task')}`（lm_eval）", f"accuracy: {t.get('task')} (lm_eval)"),
                               str(t["command"]), "09_accuracy"))
    return out


def commands_table(cmds: list[Command]) -> tuple[list[T], list[list[Any]]]:
    """What (with the chapter that ran it), the command (verbatim: show with `verbatim_cols=(1,)`); two columns,
    so that the long command lines get the width."""
    def what(c: Command) -> T:
        if not c.chapter:
            return c.what
        n = c.chapter.split("_", 1)[0]
        return T(f"{c.what.zh}，第 {n} 章", f"{c.what.en}, chapter {n}")

    return [T("用途", "What"), T("命令", "Command")], [[what(c), c.command] for c in cmds]


# -- the evidence and artifact files ------------------------------------------------------------------------------
_KIND = (  # (file name ends with / contains, what it holds)
    (".log", T("原始日志：引擎、服务与工具的输出", "raw log: engine, server and tool output")),
    (".sha256", T("每个输入文件的完整 SHA-256（sha256sum 格式，按组）", "every input file's full SHA-256 (sha256sum format, by set)")),
    ("bench_throughput.json", T("离线吞吐基准（`vllm bench throughput`）的结果", "vllm bench throughput result")),
    ("bench", T("`vllm bench serve` 的结果（每个并发一份）", "vllm bench serve result (one per concurrency)")),
    (".jsonl", T("逐题结果（可与基线逐题配对）", "per-item results (pairable with a baseline item by item)")),
    ("samples", T("lm-eval 抽取的题目", "the items lm-eval drew")),
    (".png", T("图", "figure")), (".svg", T("图", "figure")),
    (".npz", T("数组（对数概率等）", "arrays (logprobs and the like)")),
    (".safetensors", T("权重张量", "weight tensors")),
    (".json", T("工具输出（JSON）", "tool output (JSON)")),
    (".txt", T("文本输出", "text output")),
)


@dataclass
class EvidenceFile:
    path: str  # relative to the run directory (a pattern with `*` for a group of files)
    bytes: int  # in all
    chapter: str
    holds: T
    count: int = 1  # files behind the row


def _holds(name: str) -> T:
    low = name.lower()
    for key, what in _KIND:
        if low.endswith(key) or (not key.startswith(".") and key in low):
            return what
    return T("本章的输出", "the chapter's output")


GROUP_FILES = 3  # this many files of one kind in one folder are one row ("bench_c*.json, 4 files"; the chapters' logs)
# a folder the run writes as one piece: one row for all its files (artifacts/<folder>/<name>/)
BUNDLES = {"faithful-tokenizer": T("忠实分词器目录（交给引擎的 `--tokenizer`；见第 02 章）",
                                   "faithful tokenizer directory (the engine's --tokenizer; see chapter 02)")}
_LANG_PAIR = re.compile(r"^(.*[._-])(?:en|zh)(\.[a-z]+)$")  # sizes_en.png / sizes_zh.png: one figure, two languages


def _one_row(files: list[Path]) -> bool:
    """Fewer than GROUP_FILES files that are still one thing: the same figure in each language."""
    if len(files) != 2:
        return False
    m = [_LANG_PAIR.match(f.name) for f in files]
    return all(m) and m[0].groups() == m[1].groups()


def evidence_index(run_dir: str | Path) -> list[EvidenceFile]:
    """Every file under the run's evidence/ and artifacts/ (in that order, sorted), with what it holds; in one
    folder, GROUP_FILES or more files of one kind are one row whose path is a pattern (`*` for what differs), whose
    `count` says how many and, for the chapters' logs, whose chapter is their range (the appendix stays within
    its pages)."""
    run_dir = Path(run_dir)
    out: list[EvidenceFile] = []
    for sub in ("evidence", "artifacts"):
        base = run_dir / sub
        groups: dict[tuple[str, str, str], list[Path]] = {}
        bundles: dict[Path, list[Path]] = {}
        for p in sorted(base.rglob("*")) if base.is_dir() else []:
            if not p.is_file():
                continue
            parts = p.relative_to(base).parts
            if sub == "artifacts" and len(parts) > 2 and parts[0] in BUNDLES:
                bundles.setdefault(base / parts[0] / parts[1], []).append(p)
            else:
                groups.setdefault((p.parent.as_posix(), _holds(p.name).en, p.suffix), []).append(p)
        for folder, files in bundles.items():
            out.append(EvidenceFile(folder.relative_to(run_dir).as_posix() + "/", sum(f.stat().st_size for f in files),
                                    "—", BUNDLES[folder.parent.name], count=len(files)))
        def chapter_of(f: Path) -> str:  # evidence/<chapter>.log, artifacts/<chapter>/...: each file its own
            n = (f.stem if sub == "evidence" else f.relative_to(run_dir).parts[1]).split("_", 1)[0]
            return n if n.isdigit() else "—"

        for files in groups.values():
            rel = files[0].relative_to(run_dir)
            # a group of evidence logs spans chapters (each log is named after its chapter): their range
            numbered = sorted({c for c in map(chapter_of, files) if c.isdigit()})
            chapter = (f"{numbered[0]}–{numbered[-1]}" if len(numbered) > 1 else numbered[0] if numbered else "—")
            size = sum(f.stat().st_size for f in files)
            if len(files) < GROUP_FILES and not _one_row(files):
                out += [EvidenceFile(f.relative_to(run_dir).as_posix(), f.stat().st_size, chapter_of(f), _holds(f.name))
                        for f in files]
                continue
            names = [f.name for f in files]
            head = os.path.commonprefix(names)
            tail = os.path.commonprefix([n[len(head):][::-1] for n in names])[::-1]
            pattern = (rel.parent / f"{head}*{tail}").as_posix()
            out.append(EvidenceFile(pattern, size, chapter, _holds(files[0].name), count=len(files)))
    return sorted(out, key=lambda f: (not f.path.startswith("evidence/"), f.path))


def _size(n: int) -> str:
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= f:
            return f"{n / f:,.1f} {unit}"
    return f"{n:,} B"


def evidence_table(files: list[EvidenceFile]) -> tuple[list[T], list[list[Any]]]:
    """File (verbatim: `verbatim_cols=(0,)`), chapter, size, what it holds."""
    return ([T("文件", "File"), T("章节", "Chapter"), T("大小", "Size"), T("内容", "Holds")],
            [[f.path, f.chapter, _size(f.bytes),
              f.holds if f.count == 1 else T(f"{f.holds.zh}（{f.count} 个文件）", f"{f.holds.en} ({f.count} files)")]
             for f in files])


# -- change log: this run against the previous run of the same profile --------------------------------------------
def previous_run(run_dir: str | Path) -> Optional[Path]:
    """The latest run beside this one (same parent folder) of the same profile that started before it."""
    run_dir = Path(run_dir).resolve()
    me = run_info(run_dir)
    profile, started = me.get("profile"), str(me.get("started") or "")
    best: Optional[tuple[str, Path]] = None
    for d in run_dir.parent.iterdir() if run_dir.parent.is_dir() else []:
        if d == run_dir or not (d / "run.json").is_file():
            continue
        info = run_info(d)
        when = str(info.get("started") or "")
        if info.get("profile") == profile and when and (not started or when < started):
            if best is None or when > best[0]:
                best = (when, d)
    return best[1] if best else None


def change_log(run_dir: str | Path, rows: Optional[list[MatrixRow]] = None, previous: Optional[Path] = None,
               limit: int = 30) -> dict[str, Any]:
    """What changed since the previous run of the same profile: the environment (engine, device, versions:
    report.compare.load_run), the checks whose status changed and the key metrics (not timings) whose value
    changed. {"previous": name or None, "changes": [{"what": T, "before": str, "now": str}], "more": n}."""
    from bitcpm_validation.report import compare

    run_dir = Path(run_dir)
    prev = previous or previous_run(run_dir)
    if prev is None:
        return {"previous": None, "changes": [], "more": 0}
    try:  # another run's files: whatever is wrong with them must not cost this run its summary
        a, b = compare.load_run(prev), compare.load_run(run_dir)
    except Exception as e:  # noqa: BLE001 -- shown as the change log's one line
        return {"previous": prev.name, "changes": [], "more": 0, "error": f"{type(e).__name__}: {e}"}
    changes: list[dict[str, Any]] = []
    for k in compare.ENV_KEYS:
        x, y = a["env"].get(k), b["env"].get(k)
        if x != y and (x or y):
            changes.append({"what": T(f"环境：`{k}`", f"environment: `{k}`"), "before": str(x or "—"), "now": str(y or "—")})
    rows = check_matrix(run_dir) if rows is None else rows
    before = {(r.chapter, r.check_id): r for r in check_matrix(prev)}
    for r in rows:
        old = before.pop((r.chapter, r.check_id), None)
        if old is None or old.status != r.status:
            changes.append({"what": T(f"{r.title.zh} {r.name_t.zh}", f"{r.title.en} {r.name_t.en}"),
                            "before": old.mark if old else "—", "now": r.mark})
    for (_, _), old in before.items():  # checks the previous run had and this one has not
        changes.append({"what": T(f"{old.title.zh} {old.name_t.zh}", f"{old.title.en} {old.name_t.en}"),
                        "before": old.mark, "now": "—"})
    seen = {(c["before"], c["now"]) for c in changes}  # a version that is also a key metric: said once
    for k in sorted(set(a["metrics"]) | set(b["metrics"])):
        x, y = a["metrics"].get(k), b["metrics"].get(k)
        if (str((x or {}).get("value") or "—"), str((y or {}).get("value") or "—")) in seen:
            continue
        if (x or {}).get("value") != (y or {}).get("value"):
            m = y or x or {}
            unit = f" {m.get('unit')}" if m.get("unit") else ""
            changes.append({"what": T(m.get("name_zh") or k, m.get("name_en") or k),
                            "before": f"{x['value']}{unit}" if x else "—", "now": f"{y['value']}{unit}" if y else "—"})
    return {"previous": prev.name, "changes": changes[:limit], "more": max(0, len(changes) - limit)}


def change_log_table(log: dict[str, Any]) -> tuple[list[T], list[list[Any]]]:
    """Headers and rows; the before / now columns are data (another run's facts and values): show them verbatim
    (`show_table(..., verbatim_cols=CHANGE_LOG_DATA_COLS)`)."""
    return ([T("变更", "What changed"), T(f"上次（`{log['previous']}`）", f"previous (`{log['previous']}`)"),
             T("本次", "this run")], [[c["what"], c["before"], c["now"]] for c in log["changes"]])


CHANGE_LOG_DATA_COLS = (1, 2)


def sections_data(run_dir: str | Path, rows: list[MatrixRow], log: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """JSON-ready data of the sections (results/00_summary.json data["sections"]); `log`: change_log's, if made."""
    log = change_log(run_dir, rows) if log is None else log
    return {
        "probes": [{"chapter": p.chapter, "id": p.id, "prompt": p.prompt, "status": p.status,
                    "why": {"zh": p.why.zh, "en": p.why.en}} for p in probe_summary(run_dir, rows)],
        "commands": [{"what": {"zh": c.what.zh, "en": c.what.en}, "command": c.command, "chapter": c.chapter}
                     for c in reproducing_commands(run_dir)],
        "evidence": [{"path": f.path, "bytes": f.bytes, "count": f.count, "chapter": f.chapter,
                      "holds": {"zh": f.holds.zh, "en": f.holds.en}}
                     for f in evidence_index(run_dir)],
        "change_log": {"previous": log["previous"], "more": log["more"], "error": log.get("error"),
                       "changes": [{"what": {"zh": c["what"].zh, "en": c["what"].en}, "before": c["before"],
                                    "now": c["now"]} for c in log["changes"]]},
    }
