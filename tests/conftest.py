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


# the credit study the Credit page's AppTest and browser tests share (made once per session by the real CLI):
# the brief's command with fewer batched floors, traceability episodes and deployment seconds than the defaults
CREDIT_STUDY = ["study", "credit", "scenarios/train-tiny.toml", "--algos", "mappo", "--seeds", "2", "--steps", "4096",
                "--envs", "8", "--episodes", "8", "--until", "300", "--evaluations", "2", "--eval-episodes", "2"]


@pytest.fixture(scope="session")
def credit_study_store(tmp_path_factory) -> Path:
    """A store holding one credit study made by the real ``desim study credit`` (tests only read it)."""
    path = tmp_path_factory.mktemp("credit-study") / "s.duckdb"
    done = subprocess.run([sys.executable, "-m", "desim.app.cli", *CREDIT_STUDY, "--store", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return path
