"""What each chapter measures and judges: one module per report chapter (its measurements and its checks).

Chapters use `bitcpm_validation.engine` (to run the model) and `bitcpm_validation.report` (to record
results); nothing under `engine` or `report` imports a chapter.
"""

import importlib
import pkgutil
from pathlib import Path

from bitcpm_validation.report import checks

REGISTRY_FILE = Path(__file__).with_name("checks.yaml")
checks.load_registry(REGISTRY_FILE)


def registered_checks(chapter: str) -> dict[str, checks.CheckSpec]:
    """A chapter's entries of the check registry (chapters/checks.yaml), by check id."""
    found = {s.id: s for s in checks.specs(chapter)}
    if not found:
        raise checks.RegistryError(f"{REGISTRY_FILE}: no checks for chapter {chapter}: add its entries")
    return found


def registry() -> list[checks.CheckSpec]:
    """Every registered check of every chapter (imports the chapter modules too)."""
    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")
    return checks.specs()
