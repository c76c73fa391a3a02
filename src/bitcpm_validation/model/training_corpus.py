"""Was the model under test trained on the prompts it is graded on? (contamination)

A model directory may declare its training corpus in `training_corpus.json`:

    {"description": "...", "module": "bitcpm_validation.model.corpus"}     # a package's corpus files
    {"description": "...", "files": ["corpus/qa.jsonl", "/data/text.txt"]}  # paths, relative to the directory

The project's stand-in declares its own corpus (models/stand-in/training_corpus.json): every probe prompt
and most `bitcpm_probe_mc` questions are in it, so its answers to them are recall, not ability. A
directory without the file (the real BitCPM4: its pre-training data is not published) is
`declared=False`: contamination cannot be measured and items are judged normally.

    c = contamination(model_dir, {"capital_france": "What is the capital of France?", ...})
    c.declared, c.hits        # True, {"capital_france", ...}
    c.reason_en(item_id)      # for the item's not_run row

An item occurs when its text (whitespace collapsed) is a substring of a corpus document (whitespace
collapsed): verbatim, as the issue asks; paraphrases are not looked for. The accuracy chapter calls the
same function with its task questions.
"""
from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

DECLARATION = "training_corpus.json"
_TEXT_SUFFIXES = {".txt", ".jsonl", ".json", ".md"}


class CorpusError(ValueError):
    """A model directory's training_corpus.json is wrong; the message says what to fix."""


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def _documents(path: Path) -> list[str]:
    """A corpus file's documents: each JSON line's strings joined (a prompt with its answer), or the text."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        docs = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    docs.append("".join(_strings(json.loads(line))))
                except json.JSONDecodeError:
                    raise CorpusError(f"{path}: line {n} is not JSON: fix the line or list the file as .txt") from None
        return docs
    if path.suffix == ".json":
        return _strings(json.loads(text))
    return [text]


@dataclass
class Corpus:
    description: str
    files: list[Path]
    documents: list[str] = field(repr=False)

    def contains(self, text: str) -> bool:
        t = _norm(text)
        return bool(t) and any(t in d for d in self._normed)

    @property
    def _normed(self) -> list[str]:
        if not hasattr(self, "_cache"):
            self._cache = [_norm(d) for d in self.documents]
        return self._cache


def declared_corpus(model_dir: str | Path) -> Optional[Corpus]:
    """The training corpus `model_dir` declares, or None. Raises CorpusError for a broken declaration."""
    d = Path(model_dir)
    decl = d / DECLARATION
    if not decl.is_file():
        return None
    try:
        spec = json.loads(decl.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorpusError(f"{decl}: not valid JSON ({e.msg}, line {e.lineno}): fix the file") from None
    if not isinstance(spec, dict) or not ({"module", "files"} & set(spec)):
        raise CorpusError(f"{decl}: give \"module\" (a Python package holding the corpus files) or \"files\" (paths)")
    files: list[Path] = []
    if "module" in spec:
        try:
            mod = importlib.import_module(spec["module"])
        except ImportError:
            raise CorpusError(f"{decl}: module {spec['module']!r} cannot be imported: install it or list the "
                              "corpus as \"files\"") from None
        here = Path(mod.__file__).parent
        files += sorted(p for p in here.iterdir() if p.suffix in _TEXT_SUFFIXES)
    for f in spec.get("files", []):
        p = Path(f) if Path(f).is_absolute() else d / f
        if not p.is_file():
            raise CorpusError(f"{decl}: corpus file {f} not found: fix the path (relative to {d})")
        files.append(p)
    if not files:
        raise CorpusError(f"{decl}: the declared corpus has no text files ({', '.join(sorted(_TEXT_SUFFIXES))})")
    docs = [doc for p in files for doc in _documents(p)]
    return Corpus(str(spec.get("description", "")), files, docs)


@dataclass
class Contamination:
    declared: bool
    corpus: Optional[Corpus]
    hits: set[str]  # ids of the items whose text occurs in the corpus
    checked: int

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.hits

    def reason_en(self, item_id: str) -> str:
        return (f"the model was trained on this prompt: {item_id}'s text occurs verbatim in its declared training "
                "corpus, so its answer shows recall, not ability")

    def reason_zh(self, item_id: str) -> str:
        return f"模型训练时见过这个提示：{item_id} 的文本原样出现在其声明的训练语料中，回答只说明记忆，不说明能力"

    def summary_en(self) -> str:
        if not self.declared:
            return "the model directory declares no training corpus: contamination cannot be measured"
        return f"{len(self.hits)} of {self.checked} items occur verbatim in the declared training corpus"

    def summary_zh(self) -> str:
        if not self.declared:
            return "模型目录未声明训练语料：无法测量数据污染"
        return f"{self.checked} 项中有 {len(self.hits)} 项原样出现在声明的训练语料中"


def contamination(model_dir: str | Path, items: Mapping[str, str]) -> Contamination:
    """Which of `items` ({id: text}) occur verbatim in the training corpus `model_dir` declares."""
    corpus = declared_corpus(model_dir)
    if corpus is None:
        return Contamination(False, None, set(), len(items))
    return Contamination(True, corpus, {k for k, t in items.items() if corpus.contains(t)}, len(items))


STAND_IN_DESCRIPTION = ("The project's own small bilingual corpus the stand-in was trained on "
                        "(bitcpm_validation.model.train_stand_in): prompt/answer pairs as raw completions and as "
                        "ChatML, plus short texts.")


def declare(model_dir: str | Path, description: str, *, module: Optional[str] = None,
            files: Optional[list[str]] = None) -> Path:
    """Write `model_dir`/training_corpus.json (what a training script calls for the directory it writes)."""
    if bool(module) == bool(files):
        raise CorpusError("declare the corpus by exactly one of module= or files=")
    spec: dict = {"description": description}
    spec.update({"module": module} if module else {"files": list(files or [])})
    p = Path(model_dir) / DECLARATION
    p.write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return p
