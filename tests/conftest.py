"""Shared fixtures. Keep small: chapter-specific fixtures belong in the chapter's own test module.

Test files mirror the package, one per module (docs/architecture.md); the cross-cutting ones beside this file
(test_layout, test_bad_inputs, test_notebooks, test_package_data), tests/chapters/test_every_check_can_fail.py and
tests/e2e/ are named after what they check instead."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory) -> dict:
    """The default report, run end to end from a clean state once per session (`make report` equivalent).

    BITCPM_E2E_RUN_DIR=runs/<id> reuses an existing run instead (fast iteration on the assertions).
    Returns {"run_dir": Path, "rc": int, "output": str}.
    """
    reuse = os.environ.get("BITCPM_E2E_RUN_DIR")
    if reuse:
        run_dir = Path(reuse).resolve()
        assert run_dir.is_dir(), f"BITCPM_E2E_RUN_DIR={reuse}: not a directory"
        return {"run_dir": run_dir, "rc": 0, "output": "(reused)"}
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    p = subprocess.run(
        [sys.executable, "-m", "bitcpm_validation", "run", "--params", "params/default.yaml", "--run-dir", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=int(os.environ.get("BITCPM_E2E_TIMEOUT", "5400")),
    )
    return {"run_dir": run_dir, "rc": p.returncode, "output": p.stdout + p.stderr}
