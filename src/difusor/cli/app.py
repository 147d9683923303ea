"""The command tree in one table, and ``main``: one place decides what the operator sees.

Each command parses its options, builds an object from the config, calls one method and maps
the outcome to an exit code. On failure an expected error is one Spanish line on stderr with its
own exit code (``errors.ExitCode``); a bad argument or option is a usage error, ``uso
incorrecto``, exit 64; Ctrl-C is ``interrumpido``, exit 130; anything else keeps its traceback.

The table names each command's module, not its function: ``main`` imports and builds only the
branch the command line names (``difusor analytics ingest`` never loads the shield's or the
console's modules, nor lets typer read their signatures: ≈ 0.1 s off every command). A command
line that names no known branch (``difusor``, ``--help``, a typo) gets the whole tree, so the
help and the «did you mean» answers are the same as ever; so does ``app``.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache
from typing import Any

import typer

# Typer (pinned) vendors click; its usage errors are only reachable there.
from typer._click.exceptions import NoArgsIsHelpError as _HelpShown
from typer._click.exceptions import UsageError as _UsageError

from difusor.cli import spanish
from difusor.cli.kit import err
from difusor.errors import DifusorError, ExitCode

# In the order ``difusor --help`` lists them: name → "module:function" under difusor.cli.
COMMANDS: dict[str, str] = {
    "init": "configure:init",
    "serve": "services:serve",
    "run": "services:run",
    "publish": "publishing:publish",
    "status": "publishing:status",
    "phase": "sites:phase",
    "rollback": "publishing:rollback",
    "gc": "publishing:gc",
    "demo": "services:demo",
    "sftp-config": "configure:sftp_config",
    "nginx-config": "configure:nginx_config",
    "purge": "publishing:purge",
    "probe": "services:probe",
    "uptime": "monitoring:uptime",
    "incidents": "monitoring:incidents",
    "incident": "monitoring:incident",
    "takedown": "monitoring:takedown",
    "report": "report:report",
    "register": "compliance:register",
    "check": "compliance:check",
    "verify": "integrity:verify",
}
# Groups: name → the module whose HELP and COMMANDS they are.
GROUPS: dict[str, str] = {
    "simulate": "simulate",
    "analytics": "analytics",
    "shield": "shield",
    "simulacro": "sites",
    "console": "console",
}
# Groups inside a group: group → (subgroup, the names of its help and commands in that module).
SUBGROUPS: dict[str, tuple[str, str, str]] = {
    "console": ("user", "USER_HELP", "USER_COMMANDS"),
}


def _module(name: str) -> Any:
    return importlib.import_module(f"difusor.cli.{name}")


def _function(target: str) -> Any:
    module, _, function = target.partition(":")
    return getattr(_module(module), function)


def build(only: str | None = None) -> typer.Typer:
    """The command tree; with ``only`` (a command's or a group's name), just that branch."""
    app = typer.Typer(
        name="difusor",
        help="Difusor oficial del PREP: recibe, verifica, publica y sirve cada corte sin "
             "modificarlo.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )
    for name, target in COMMANDS.items():
        if only in (None, name):
            app.command(name)(_function(target))
    for group_name, module_name in GROUPS.items():
        if only not in (None, group_name):
            continue
        module = _module(module_name)
        group = typer.Typer(help=module.HELP, no_args_is_help=True)
        for name, command in module.COMMANDS.items():
            group.command(name)(command)
        if group_name in SUBGROUPS:
            sub_name, sub_help, sub_commands = SUBGROUPS[group_name]
            sub = typer.Typer(help=getattr(module, sub_help), no_args_is_help=True)
            for name, command in getattr(module, sub_commands).items():
                sub.command(name)(command)
            group.add_typer(sub, name=sub_name)
        app.add_typer(group, name=group_name)
    if only in COMMANDS:
        # Typer would make a tree of one command that command itself (``difusor init`` would
        # then take "init" for an argument): a callback keeps the root a group.
        app.callback()(_root)
    return app


def _root() -> None:
    """Difusor oficial del PREP."""


@cache
def _whole() -> typer.Typer:
    return build()


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole tree, for tests and tools that walk it
        return _whole()
    raise AttributeError(name)


def branch(args: list[str]) -> str | None:
    """The command or group the command line names first, when it is a known one."""
    if args and (args[0] in COMMANDS or args[0] in GROUPS):
        return args[0]
    return None


def main() -> None:
    try:
        only = branch(sys.argv[1:])
        tree = build(only) if only else _whole()
        code = spanish.command(tree)(standalone_mode=False, prog_name="difusor")
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
