"""Documentation is tested: every command has help text and appears in the README."""

from pathlib import Path

import click

from newsletter.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "newsletter") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
    return found


def test_every_command_has_help_and_is_in_the_readme() -> None:
    listed = commands(cli)
    assert len(listed) >= 14
    for full_name, command in listed:
        assert command.help and command.help.strip(), full_name
        assert f"`{full_name}" in README, f"{full_name} is missing from the README"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{full_name} {param.opts[0]} has no help"
