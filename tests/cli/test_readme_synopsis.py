"""The README's CLI synopsis lists every option of every command, and no option that does not exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from edgemine.cli.main import app

README = Path(__file__).resolve().parents[2] / "README.md"
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def synopsis_by_command() -> dict[str, str]:
    """The text of each command's entry in the first code block of the README's `## CLI` section."""
    section = README.read_text().split("\n## CLI\n", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    groups = {name.split()[0] for name in cli_commands() if " " in name}  # `labels`, `scenario`, ...
    entries: dict[str, str] = {}
    current = ""
    for line in block.splitlines():
        if line.startswith("edgemine "):
            words = line.split()
            current = " ".join(words[1:3]) if words[1] in groups else words[1]
        if current:
            entries[current] = entries.get(current, "") + "\n" + line
    return entries


def cli_commands() -> dict[str, Any]:
    """Every leaf command of the console script, by its name as typed (`labels import`)."""
    root: Any = typer.main.get_command(app)  # typer's (vendored) click objects
    out: dict[str, Any] = {}
    for name, command in root.commands.items():
        if hasattr(command, "commands"):  # a group: `edgemine labels ...`
            out.update({f"{name} {sub}": leaf for sub, leaf in command.commands.items()})
        else:
            out[name] = command
    return out


def option_names(command: Any) -> list[list[str]]:
    """Each option's spellings (e.g. ['--positive', '-p'], ['--prune', '--no-prune']), without --help."""
    return [[*p.opts, *p.secondary_opts] for p in command.params
            if p.param_type_name == "option" and "--help" not in p.opts]


def test_readme_synopsis_covers_every_command_and_option() -> None:
    entries = synopsis_by_command()
    commands = cli_commands()
    assert sorted(entries) == sorted(commands)
    for name, command in commands.items():
        written = set(OPTION.findall(entries[name]))
        missing = [spellings[0] for spellings in option_names(command) if not written & set(spellings)]
        assert not missing, f"README synopsis of `edgemine {name}` lacks {missing}"
        known = {s for spellings in option_names(command) for s in spellings}
        assert written <= known, f"README synopsis of `edgemine {name}` names unknown {sorted(written - known)}"
