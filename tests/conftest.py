"""Shared fixtures. Keep small: chapter-specific fixtures belong in the chapter's own test module.

Test files mirror the package, one per module (docs/architecture.md); the cross-cutting ones beside this file
(test_layout, test_bad_inputs, test_notebooks, test_package_data, test_background_report),
tests/chapters/test_every_check_can_fail.py and tests/e2e/ are named after what they check instead.

The default report the e2e tests read starts in the background when collection ends and those tests run last
(background_report.py), so that its minutes overlap the other tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from background_report import BackgroundRun, e2e_last, should_start

ROOT = Path(__file__).resolve().parents[1]
BACKGROUND = pytest.StashKey[BackgroundRun]()


@pytest.hookimpl(trylast=True)  # after any other reordering or deselection
def pytest_collection_modifyitems(items):
    items[:] = e2e_last(items)


def pytest_collection_finish(session):
    config = session.config
    if should_start(session.items, os.environ, config.option.collectonly):
        run = config.stash[BACKGROUND] = BackgroundRun(config._tmp_path_factory.mktemp("e2e"))
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"e2e: the default report runs in the background (log: {run.log})")


def pytest_sessionfinish(session):
    run = session.config.stash.get(BACKGROUND, None)
    if run is not None:
        run.stop()  # still running after a -x stop, Ctrl-C or a failure before the e2e tests: leave nothing behind


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def e2e_run(request, tmp_path_factory) -> dict:
    """The default report, run end to end from a clean state once per session (`make report` equivalent).

    BITCPM_E2E_RUN_DIR=runs/<id> reuses an existing run instead (fast iteration on the assertions).
    Returns {"run_dir": Path, "rc": int, "output": str}. Started in the background at collection end
    (pytest_collection_finish); here only when it was not (a test that asks for this fixture by name at run time).
    """
    reuse = os.environ.get("BITCPM_E2E_RUN_DIR")
    if reuse:
        run_dir = Path(reuse).resolve()
        assert run_dir.is_dir(), f"BITCPM_E2E_RUN_DIR={reuse}: not a directory"
        return {"run_dir": run_dir, "rc": 0, "output": "(reused)"}
    stash = request.config.stash
    if BACKGROUND not in stash:
        stash[BACKGROUND] = BackgroundRun(tmp_path_factory.mktemp("e2e"))
    return stash[BACKGROUND].result()

