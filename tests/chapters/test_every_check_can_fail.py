"""Every registered check can fail (issue 10): a case in tests/worst_cases/ drives it to its worst status."""
from __future__ import annotations

import importlib
import pkgutil

import pytest

from bitcpm_validation import chapters
from bitcpm_validation.report import checks

import worst_cases

SPECS = chapters.registry()


def _cases() -> dict[tuple[str, str], object]:
    out: dict[tuple[str, str], object] = {}
    for m in pkgutil.iter_modules(worst_cases.__path__):
        mod = importlib.import_module(f"worst_cases.{m.name}")
        for check_id, fn in getattr(mod, "CASES", {}).items():
            out[(m.name, check_id)] = fn
    return out


CASES = _cases()


def test_registry_is_not_empty_and_scoped():
    assert SPECS, "no check is registered: list them in src/bitcpm_validation/chapters/checks.yaml"
    for s in SPECS:
        assert s.scope in ("engine", "model", "performance", "repository", "document"), s
        assert s.criterion_en and s.criterion_zh, f"{s.chapter}/{s.id}: state the criterion in both languages"
        assert s.worst == "fail" or s.worst_reason, f"{s.chapter}/{s.id}: a check whose worst is warn must say why"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.chapter}/{s.id}")
def test_check_reaches_its_worst_status(spec: checks.CheckSpec):
    case = CASES.get((spec.chapter, spec.id))
    assert case is not None, (f"{spec.chapter}/{spec.id} has no worst case: add one to "
                              f"tests/worst_cases/{spec.chapter}.py (CASES[{spec.id!r}])")
    row = case()
    assert row.id.split(":", 1)[0] == spec.id and row.scope == spec.scope
    assert row.status == spec.worst, f"{spec.chapter}/{spec.id}: the worst case gave {row.status!r}, not {spec.worst!r}"
    assert row.detail_en, f"{spec.chapter}/{spec.id}: a {row.status} row must say why (detail)"


def test_every_registry_entry_is_judged_by_its_chapter_module():
    """An entry of chapters/checks.yaml that no chapter module judges with is stale."""
    from pathlib import Path

    chapters_dir = Path(chapters.__file__).parent
    sources = {p.stem: p.read_text(encoding="utf-8") for p in chapters_dir.glob("*.py")}
    unused = [f"{s.chapter}/{s.id}" for s in SPECS
              if not any(f'registered_checks("{s.chapter}")' in src and f'CHECKS["{s.id}"]' in src for src in sources.values())]
    assert not unused, f"registry entries no chapter module judges with: {unused}"


def test_no_case_for_an_unregistered_check():
    known = {(s.chapter, s.id) for s in SPECS}
    assert not set(CASES) - known, f"cases for checks that are not registered: {sorted(set(CASES) - known)}"


def test_every_checks_chinese_text_has_no_english_word():
    """Issue 20.5: a check's Chinese name, criterion, impact, remedy and worst reason use the glossary's terms;
    identifiers and commands are `code` (how notes, tables and the registry appendix show them)."""
    from rendered_text import english_words

    from bitcpm_validation.report.display import note_html

    texts = {(s.id, k): v for s in chapters.registry()
             for k, v in (("name", s.name_zh), ("criterion", s.criterion_zh), ("impact", s.impact_zh),
                          ("remedy", s.remedy_zh), ("worst_reason", s.worst_reason_zh)) if v}
    found = {key: w for key, text in texts.items() if (w := english_words(f"<p>{note_html(text)}</p>"))}
    assert found == {}
