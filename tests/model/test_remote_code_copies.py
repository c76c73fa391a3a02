"""The shipped model directories carry the remote-code files as the real repository does; they must be
the package's sources, byte for byte (one implementation, copied into each model dir by the writer)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "bitcpm_validation" / "model" / "remote_code"


@pytest.mark.parametrize("model_dir", ["bitcpm4-0.5b", "stand-in"])
@pytest.mark.parametrize("name", ["configuration_minicpm.py", "modeling_minicpm.py"])
def test_model_dir_remote_code_is_the_package_source(model_dir, name):
    shipped = ROOT / "models" / model_dir / name
    assert shipped.read_bytes() == (SOURCE / name).read_bytes(), (
        f"{shipped} differs from {SOURCE / name}: rebuild the model dir with the writer")
