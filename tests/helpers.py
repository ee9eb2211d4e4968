"""Helpers shared by the test modules."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, timeout=300):
    """The real console entry point in a subprocess: (returncode, stdout, stderr)."""
    p = subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p.returncode, p.stdout, p.stderr


def cli_inproc(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """The console entry point in this process (fast): (exit code, stdout, stderr)."""
    import cli as cli_mod

    monkeypatch.setattr(sys, "argv", ["tilegen", *map(str, args)])
    code = 0
    try:
        cli_mod.main()
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err
