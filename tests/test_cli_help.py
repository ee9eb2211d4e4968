"""The CLI explains itself: every command and every option has help text, and summaries read
as one sentence in `tilegen --help`."""

import click
import typer
from typer.testing import CliRunner

from cli import app

COMMANDS = typer.main.get_command(app).commands


def test_every_command_and_option_has_help():
    assert {"synth", "train", "export", "generate", "tiles", "evaluate"} <= set(COMMANDS)
    for name, command in COMMANDS.items():
        summary = (command.help or "").split("\n\n")[0]
        assert summary.strip().endswith("."), f"{name}: summary {summary!r}"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}: no help text"


def test_help_reflows_paragraphs_to_the_terminal():
    runner = CliRunner(env={"COLUMNS": "200"})  # rich reads the width from COLUMNS
    root = runner.invoke(app, ["--help"])
    assert root.exit_code == 0
    for name in COMMANDS:
        assert name in root.output
    # A docstring's second paragraph is one re-flowed paragraph, not its source lines: the
    # source breaks "... the result has the same" / "bytes as ..." and must not show it.
    out = runner.invoke(app, ["generate", "--help"]).output
    assert "the result has the same bytes as an uninterrupted run" in " ".join(out.split())
    line = next(s for s in out.splitlines() if "Rerunning an interrupted" in s)
    assert "bytes as an uninterrupted run" in line
