"""The desim CLI driven in this process, as a user's shell would see it (exit code, stdout, stderr)."""
from __future__ import annotations

import contextlib
import io
import sys

from desim.app import cli


def call(*args: str) -> tuple[int, str, str]:
    """``desim ARGS`` through the console entry point: (exit code, stdout, stderr). An exception that
    escapes ``main`` (what a user would see as a traceback) is not caught: the test fails with it."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["desim", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, out: str, err: str) -> str:
    """Assert the shape of every refusal: exit 2, nothing on stdout, one ``desim: error:`` line; return it."""
    assert code == 2, (code, out, err)
    assert out == "", out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("desim: error"), err
    assert "Traceback" not in err
    return lines[0]
