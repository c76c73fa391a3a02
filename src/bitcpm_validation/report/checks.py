"""The check registry: every check a chapter can make, with its chapter, scope and criterion.

Every check is listed once in the registry file `chapters/checks.yaml` (id, chapter, scope, names, criterion,
worst status and why); a chapter module takes its entries and judges with them:

    CHECKS = registered_checks("03_inference")          # bitcpm_validation.chapters

    def judge_probe(item: str, text: str, expect: Expectation) -> Check:
        ...
        return CHECKS["probe"].row("fail", detail_en=..., detail_zh=..., item=item)

The notebook only records what the function returned (`ch.record(row)`): no status is ever written
by hand. Scopes (see results.SCOPES):

- engine:      does this engine on this device run this model faithfully?
- performance: is it fast enough, relative to what? (a measurement on a busy host is not_comparable, never ❌)
- repository:  are the model's own files consistent (config, tokenizer, chat template, remote code, weights)?
- model:       is the model good? (criteria under which noise fails)
- document:    are the original document's claims true? (findings, never part of a verdict)

`worst` is the worst status a check can give: "fail" for nearly all; "warn" only where a failure is
not the check's to call (the reason is stated in `worst_reason`, and the appendix prints it). Every
registered check has a test that makes it reach its worst status (tests/chapters/test_every_check_can_fail.py,
with one case per check in tests/worst_cases/<chapter>.py).
`bitcpm_validation.chapters.registry()` returns every spec (and imports every chapter module, so a test
can check that each entry is used). `define()` registers one check by hand (tests' throwaway chapters).

Optional texts for the summary's findings (one line per ❌ / ⚠️: what, impact, what to do):
`impact_en/impact_zh` (what a failure means for the reader) and `remedy_en/remedy_zh` (what to do).
Without them the summary says what a failure of the check's scope means and points to its chapter.
`worst_reason_zh` is the Chinese `worst_reason` (the appendix shows one language at a time).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import yaml

from bitcpm_validation.report.results import SCOPES, Check, CheckStatus, Scope

Worst = Literal["fail", "warn"]


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class CheckSpec:
    id: str
    chapter: str  # NN_name
    scope: Scope
    name_en: str
    name_zh: str
    criterion_en: str
    criterion_zh: str
    worst: Worst = "fail"
    worst_reason: str = ""  # why this check cannot fail (required when worst == "warn")
    family: bool = False  # one row per item; row ids are "<id>:<item>"
    impact_en: str = ""  # what a ❌ / ⚠️ of this check means for the reader (summary findings)
    impact_zh: str = ""
    remedy_en: str = ""  # what to do about it
    remedy_zh: str = ""
    worst_reason_zh: str = ""

    def row(self, status: CheckStatus, detail_en: str = "", detail_zh: str = "", *, item: Optional[str] = None,
            name_en: Optional[str] = None, name_zh: Optional[str] = None) -> Check:
        """A judged row of this check. `item` names the member of a family (a probe, a task, ...)."""
        if status == "fail" and self.worst == "warn":
            raise RegistryError(f"check {self.chapter}/{self.id} is registered with worst 'warn' but gave 'fail'")
        if self.family and not item:
            raise RegistryError(f"check {self.chapter}/{self.id} is a family: give the row's item")
        if item and not self.family:
            raise RegistryError(f"check {self.chapter}/{self.id} is not a family: it takes no item")
        return Check(
            id=f"{self.id}:{item}" if item else self.id, status=status,
            name_en=name_en or self.name_en, name_zh=name_zh or self.name_zh,
            detail_en=detail_en, detail_zh=detail_zh or detail_en, scope=self.scope,
        )

    def not_run(self, reason_en: str, reason_zh: str, *, item: Optional[str] = None, **names: str) -> Check:
        """The check could not be made in this run: say why (shown as —, makes its scope incomplete)."""
        return self.row("not_run", reason_en, reason_zh, item=item, **names)

    def not_comparable(self, reason_en: str, reason_zh: str, *, item: Optional[str] = None, **names: str) -> Check:
        """Measured, but the measurement is invalid (a busy host, too few samples, no warm-up): say why and what
        to re-run (shown as ⊘; its scope's verdict is "not comparable", never ❌)."""
        return self.row("not_comparable", reason_en, reason_zh, item=item, **names)


_SPECS: dict[tuple[str, str], CheckSpec] = {}


def define(check_id: str, chapter: str, scope: Scope, name_en: str, name_zh: str, *, criterion_en: str,
           criterion_zh: str, worst: Worst = "fail", worst_reason: str = "", family: bool = False,
           impact_en: str = "", impact_zh: str = "", remedy_en: str = "", remedy_zh: str = "",
           worst_reason_zh: str = "") -> CheckSpec:
    """Register a check (once per chapter module import; re-importing the same definition is harmless)."""
    if scope not in SCOPES:
        raise RegistryError(f"check {chapter}/{check_id}: scope must be one of {SCOPES}, got {scope!r}")
    if ":" in check_id:
        raise RegistryError(f"check {chapter}/{check_id}: ':' is reserved for family items")
    if worst == "warn" and not worst_reason:
        raise RegistryError(f"check {chapter}/{check_id}: a check that cannot fail must say why (worst_reason)")
    if bool(impact_en) != bool(impact_zh) or bool(remedy_en) != bool(remedy_zh):
        raise RegistryError(f"check {chapter}/{check_id}: give impact and remedy in both languages (or neither)")
    spec = CheckSpec(check_id, chapter, scope, name_en, name_zh, criterion_en, criterion_zh, worst,
                     worst_reason, family, impact_en, impact_zh, remedy_en, remedy_zh, worst_reason_zh)
    old = _SPECS.get((chapter, check_id))
    if old is not None and old != spec:
        raise RegistryError(f"check {chapter}/{check_id} is defined twice with different contents")
    _SPECS[(chapter, check_id)] = spec
    return spec


def load_registry(path: Path) -> list[CheckSpec]:
    """Register every check of a registry file (chapters/checks.yaml: chapter -> check id -> entry)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise RegistryError(f"{path}: cannot read the check registry ({e}): fix the file") from None
    out = []
    for chapter, entries in (data or {}).items():
        for check_id, e in (entries or {}).items():
            try:
                out.append(define(
                    check_id, chapter, e["scope"], e["name"]["en"], e["name"]["zh"],
                    criterion_en=e["criterion"]["en"], criterion_zh=e["criterion"]["zh"],
                    worst=e.get("worst", "fail"), worst_reason=e.get("worst_reason", {}).get("en", ""),
                    worst_reason_zh=e.get("worst_reason", {}).get("zh", ""), family=bool(e.get("family", False)),
                    impact_en=e.get("impact", {}).get("en", ""), impact_zh=e.get("impact", {}).get("zh", ""),
                    remedy_en=e.get("remedy", {}).get("en", ""), remedy_zh=e.get("remedy", {}).get("zh", "")))
            except (KeyError, TypeError, AttributeError) as err:
                raise RegistryError(f"{path}: {chapter}/{check_id}: missing or malformed {err}: see the file's header")
    return out


def specs(chapter: Optional[str] = None) -> list[CheckSpec]:
    """Registered checks (of one chapter), in chapter then definition order."""
    out = [s for s in _SPECS.values() if chapter is None or s.chapter == chapter]
    return sorted(out, key=lambda s: s.chapter)
