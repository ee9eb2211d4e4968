"""The repository's shape (docs/DESIGN.md section 1): import names are paths, functions fit on a
screen, cli.py stays thin, and the library's comments hold no lab notebook."""

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [*sorted((ROOT / "tilegen").glob("*.py")), *sorted((ROOT / "train").glob("*.py"))]
LIBRARY += sorted((ROOT / "export").glob("*.py"))


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_every_module_has_one_import_name():
    # The user's folders are top-level packages: tilegen.train would be a second name for train.
    for alias in ("tilegen.train", "tilegen.export", "tilegen.cli"):
        assert importlib.util.find_spec(alias) is None, alias
    for name, folder in (("train", "train"), ("export", "export"), ("tilegen", "tilegen")):
        spec = importlib.util.find_spec(name)
        assert Path(spec.origin).parent == ROOT / folder, (name, spec.origin)
    assert Path(importlib.util.find_spec("cli").origin) == ROOT / "cli.py"
    assert not (ROOT / "tilegen" / "cli.py").exists()


def test_no_library_function_over_80_lines():
    long = [
        f"{p.relative_to(ROOT)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for p in LIBRARY
        for f in functions(p)
        if f.end_lineno - f.lineno + 1 > 80
    ]
    assert not long, long


def test_cli_is_thin():
    cli = ROOT / "cli.py"
    assert len(cli.read_text().splitlines()) <= 400
    tree = ast.parse(cli.read_text())
    commands = [
        f
        for f in tree.body
        if isinstance(f, ast.FunctionDef)
        and any("command" in ast.unparse(d) for d in f.decorator_list)
    ]
    assert len(commands) >= 12
    for f in commands:
        body = f.body[1:] if ast.get_docstring(f) else f.body
        lines = body[-1].end_lineno - body[0].lineno + 1
        assert lines <= 25, (f.name, lines)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_lab_notebook_in_the_library(path):
    text = path.read_text()
    # onnxruntime's sessions are the one legitimate use of the word.
    assert not re.search(r"\bsessions? \d", text, re.I), path
    assert "MODELS.md" not in text and "docs/history" not in text, path
    assert not (ROOT / "tilegen" / "assets" / "MODELS.md").exists()
