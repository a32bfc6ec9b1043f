"""Shared fixtures."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def regular_install(tmp_path_factory) -> Path:
    """The project installed the regular way (a built wheel, not editable) into a scratch folder; its path.

    Put it first on PYTHONPATH to use it instead of the editable install of the test environment."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (target / "desim" / "models" / "warehouse" / "model.py").is_file()
    return target
