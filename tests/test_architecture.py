"""The layers of DESIGN.md hold: import-linter's contracts (pyproject.toml) pass on the source tree.

desim's subpackages live in sibling folders (installed as desim.models, desim.policies ... by
setuptools' package-dir mapping); the links desim/models -> ../models (and the like) give the
source tree the installed layout, which import-linter walks.
"""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("desim", "models", "policies", "network", "dashboards")


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "kept" in proc.stdout


def function_local_imports() -> list[str]:
    """Imports of desim's own modules inside functions (each must buy start-up time and say so)."""
    found = []
    for folder in PROJECT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    mod = node.module if isinstance(node, ast.ImportFrom) else (
                        node.names[0].name if isinstance(node, ast.Import) else None)
                    if mod and mod.split(".")[0] == "desim":
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {mod}")
    return found


def test_few_function_local_project_imports_each_with_a_reason():
    found = function_local_imports()
    assert len(found) < 10, "\n".join(found)
    for item in found:
        path, rest = item.split(":", 1)
        line = (ROOT / path).read_text().splitlines()[int(rest.split()[0]) - 1]
        assert "#" in line, f"{item}: a function-local import says why it is lazy"
