"""Shared fixtures."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def regular_install(tmp_path_factory) -> Path:
    """The project installed the regular way (a built wheel, not editable) into a scratch folder; its path.

    Put it first on PYTHONPATH to use it instead of the editable install of the test environment."""
    # built from a copy, so the build neither writes build/ or *.egg-info into the source tree
    # nor picks up stale files from them
    src, target = tmp_path_factory.mktemp("src") / "desim", tmp_path_factory.mktemp("site")
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "runs", "__pycache__", ".pytest_cache", ".hypothesis",
        "*.duckdb", "*.duckdb.wal", "*.pt", "export"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (target / "desim" / "models" / "warehouse" / "model.py").is_file()
    return target
