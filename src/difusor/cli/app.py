"""The command tree in one table, and ``main``: one place decides what the operator sees.

Each command parses its options, builds an object from the config, calls one method and maps
the outcome to an exit code. On failure an expected error is one Spanish line on stderr with its
own exit code (``errors.ExitCode``); a bad argument or option is a usage error, ``uso
incorrecto``, exit 64; Ctrl-C is ``interrumpido``, exit 130; anything else keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

import typer

# Typer (pinned) vendors click; its usage errors are only reachable there.
from typer._click.exceptions import NoArgsIsHelpError as _HelpShown
from typer._click.exceptions import UsageError as _UsageError

from difusor.cli import (
    analytics,
    compliance,
    configure,
    console,
    integrity,
    monitoring,
    publishing,
    report,
    services,
    shield,
    simulate,
    sites,
    spanish,
)
from difusor.cli.kit import err
from difusor.errors import DifusorError, ExitCode

# In the order ``difusor --help`` lists them.
COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("init", configure.init),
    ("serve", services.serve),
    ("run", services.run),
    ("publish", publishing.publish),
    ("status", publishing.status),
    ("phase", sites.phase),
    ("rollback", publishing.rollback),
    ("gc", publishing.gc),
    ("demo", services.demo),
    ("sftp-config", configure.sftp_config),
    ("nginx-config", configure.nginx_config),
    ("purge", publishing.purge),
    ("probe", services.probe),
    ("uptime", monitoring.uptime),
    ("incidents", monitoring.incidents),
    ("incident", monitoring.incident),
    ("takedown", monitoring.takedown),
    ("report", report.report),
    ("register", compliance.register),
    ("check", compliance.check),
    ("verify", integrity.verify),
]
GROUPS: list[tuple[str, str, Mapping[str, Callable[..., Any]]]] = [
    ("simulate", simulate.HELP, simulate.COMMANDS),
    ("analytics", analytics.HELP, analytics.COMMANDS),
    ("shield", shield.HELP, shield.COMMANDS),
    ("simulacro", sites.HELP, sites.COMMANDS),
    ("console", console.HELP, console.COMMANDS),
]
# Groups inside a group: (group, subgroup, help, commands).
SUBGROUPS: list[tuple[str, str, str, Mapping[str, Callable[..., Any]]]] = [
    ("console", "user", console.USER_HELP, console.USER_COMMANDS),
]


def build() -> typer.Typer:
    app = typer.Typer(
        name="difusor",
        help="Difusor oficial del PREP: recibe, verifica, publica y sirve cada corte sin "
             "modificarlo.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )
    for name, command in COMMANDS:
        app.command(name)(command)
    for group_name, help_text, commands in GROUPS:
        group = typer.Typer(help=help_text, no_args_is_help=True)
        for name, command in commands.items():
            group.command(name)(command)
        for parent, sub_name, sub_help, sub_commands in SUBGROUPS:
            if parent == group_name:
                sub = typer.Typer(help=sub_help, no_args_is_help=True)
                for name, command in sub_commands.items():
                    sub.command(name)(command)
                group.add_typer(sub, name=sub_name)
        app.add_typer(group, name=group_name)
    return app


app = build()


def main() -> None:
    try:
        code = spanish.command(app)(standalone_mode=False, prog_name="difusor")
    except DifusorError as exc:
        err.print(f"difusor: {exc.message}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except _HelpShown:
        sys.exit(ExitCode.OK)
    except _UsageError as exc:
        err.print(f"difusor: uso incorrecto: {spanish.usage_message(exc)}", markup=False,
                  soft_wrap=True)
        sys.exit(ExitCode.USAGE)
    except (typer.Abort, KeyboardInterrupt):
        err.print("difusor: interrumpido", markup=False)
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)
