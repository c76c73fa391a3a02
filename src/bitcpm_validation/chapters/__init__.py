"""What each chapter measures and judges: one module per report chapter (its measurements and its checks).

Chapters use `bitcpm_validation.engine` (to run the model) and `bitcpm_validation.report` (to record
results); nothing under `engine` or `report` imports a chapter.
"""

import importlib
import pkgutil


def registry():
    """Every registered check of every chapter module (imports them all; see report.checks)."""
    from bitcpm_validation.report import checks

    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")
    return checks.specs()
