"""The chapter registry: the report's chapters in the original document's order.

A chapter is a notebook notebooks/<id>.ipynb that writes runs/<run>/results/<id>.json. Titles live
here so that the summary can name a chapter that did not run. A notebook missing from this list
still runs and still appears in the summary (titled by its file name).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bitcpm_validation.paths import NOTEBOOKS_DIR


@dataclass(frozen=True)
class ChapterInfo:
    id: str  # NN_name, the notebook's stem
    title_en: str
    title_zh: str

    @property
    def number(self) -> str:
        return self.id.split("_", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split("_", 1)[1] if "_" in self.id else self.id

    @property
    def notebook(self) -> Path:
        return NOTEBOOKS_DIR / f"{self.id}.ipynb"

    def heading(self) -> str:
        return f"{self.number} · {self.title_zh} · {self.title_en}"


CHAPTERS: list[ChapterInfo] = [
    ChapterInfo("00_summary", "Summary", "总结"),
    ChapterInfo("01_environment", "Environment", "运行环境"),
    ChapterInfo("02_loading", "Loading", "模型加载"),
    ChapterInfo("03_inference", "Inference", "推理测试"),
    ChapterInfo("04_determinism", "Determinism", "推理自洽性"),
    ChapterInfo("05_chinese", "Chinese", "中文能力"),
    ChapterInfo("06_precision", "Precision", "精度对比"),
    ChapterInfo("07_performance", "Performance", "性能"),
    ChapterInfo("08_serving", "Serving", "服务部署"),
    ChapterInfo("09_accuracy", "Accuracy", "基准精度"),
    ChapterInfo("10_quantization", "Quantization", "三值量化"),
    ChapterInfo("11_provenance", "Provenance", "来源与可复现性"),
]
SUMMARY_ID = "00_summary"


def all_chapters() -> list[ChapterInfo]:
    """Registered chapters plus any notebook in notebooks/ not registered yet, in file order."""
    known = {c.id: c for c in CHAPTERS}
    ids = sorted(set(known) | {p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")})
    return [known.get(i) or ChapterInfo(i, i.split("_", 1)[-1].title(), i.split("_", 1)[-1]) for i in ids]


def chapter(id_or_name: str) -> ChapterInfo:
    for c in all_chapters():
        if id_or_name in (c.id, c.name, c.number):
            return c
    names = ", ".join(c.name for c in all_chapters())
    raise KeyError(f"unknown chapter {id_or_name!r}: choose from {names}")
