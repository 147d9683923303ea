"""Typer's own words in Spanish: help pages and usage errors.

Typer (pinned in uv.lock) vendors click without a message catalog, so the handful of strings it
shows an operator — the help option, panel titles, ``Usage:``, ``[default: …]``, usage errors —
are replaced here: ``command(app)`` builds the click command with Spanish help pages, and
``usage_message`` turns a usage error into one Spanish sentence.
"""

from __future__ import annotations

import re
from typing import Any

import typer
import typer.main
from typer._click import decorators, formatting
from typer._click.core import Command
from typer.core import TyperCommand, TyperGroup

HELP = "Muestra esta ayuda y sale."
OPTIONS = "[OPCIONES]"
SUBCOMMAND = "ORDEN [ARGS]..."

_RICH = {
    "DEPRECATED_STRING": "(obsoleto) ",
    "DEFAULT_STRING": "[por omisión: {}]",
    "ENVVAR_STRING": "[variable de entorno: {}]",
    "REQUIRED_LONG_STRING": "[obligatorio]",
    "ARGUMENTS_PANEL_TITLE": "Argumentos",
    "OPTIONS_PANEL_TITLE": "Opciones",
    "COMMANDS_PANEL_TITLE": "Órdenes",
    "ERRORS_PANEL_TITLE": "Error",
    "ABORTED_TEXT": "Interrumpido.",
    "RICH_HELP": "Prueba [blue]'{command_path} {help_option}'[/] para ver la ayuda.",
}

_installed = False


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    # Rich (and Markdown) load only when a help page is drawn: ≈ 80 ms off every command.
    for cls in (TyperCommand, TyperGroup):
        cls.format_help = _in_spanish(cls.format_help)  # type: ignore[method-assign]
    original_help_option = decorators.help_option

    def help_option(param_decls: list[str]) -> Any:
        add = original_help_option(param_decls)

        def apply(cmd: Command) -> Command:
            add(cmd)
            cmd.params[-1].help = HELP
            return cmd

        return apply

    decorators.help_option = help_option  # looked up on each use by Command.get_help_option
    original_write_usage = formatting.HelpFormatter.write_usage

    def write_usage(self: Any, prog: str, args: str = "", prefix: str | None = None) -> None:
        original_write_usage(self, prog, args, "Uso: " if prefix is None else prefix)

    formatting.HelpFormatter.write_usage = write_usage  # type: ignore[method-assign]


def _in_spanish(format_help: Any) -> Any:
    def wrapped(self: Any, ctx: Any, formatter: Any) -> Any:
        import typer.rich_utils as rich_utils

        for name, text in _RICH.items():
            setattr(rich_utils, name, text)
        return format_help(self, ctx, formatter)

    return wrapped


def command(app: typer.Typer) -> Command:
    """``app`` as the click command it runs, every help page in Spanish."""
    _install()
    root = typer.main.get_command(app)
    pending = [root]
    while pending:
        cmd = pending.pop()
        if cmd.options_metavar:
            cmd.options_metavar = OPTIONS
        if isinstance(cmd, TyperGroup):
            cmd.subcommand_metavar = SUBCOMMAND  # type: ignore[attr-defined]
            pending.extend(cmd.commands.values())
    return root


# (pattern, replacement) over click's English; the first match wins, inner text is translated
# again (an "Invalid value" carries the type's own message).
_OUTER: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Invalid value for (.+?): (.*)", re.S), "valor inválido para {0}: {1*}"),
    (re.compile(r"Invalid value: (.*)", re.S), "valor inválido: {0*}"),
    (re.compile(r"No such option: (\S+)(?: \(Possible options: (.*)\))?"),
     "no existe la opción {0}{1?((opciones parecidas: {1}))}"),
    (re.compile(r"No such command '(.*)'\.(?: Did you mean (.*)\?)?"),
     "no existe la orden «{0}»{1?((¿quisiste decir {1}?))}; «difusor --help» las lista"),
    (re.compile(r"Missing command\."), "falta la orden; «difusor --help» las lista"),
    (re.compile(r"Missing argument '?([^'.]*)'?\.(.*)", re.S), "falta el argumento {0^}"),
    (re.compile(r"Missing option '?([^'.]*)'?\.(.*)", re.S), "falta la opción {0}"),
    (re.compile(r"Missing parameter:? '?([^'.]*)'?\.?(.*)", re.S), "falta el parámetro {0}"),
    (re.compile(r"Got unexpected extra argument(?:\(s\)|s)? \((.*)\)"),
     "sobra(n) argumento(s): {0}"),
    (re.compile(r"Option '(.*)' requires an argument\."), "la opción {0} requiere un valor"),
    (re.compile(r"Option '(.*)' requires (\d+) arguments\."), "la opción {0} requiere {1} valores"),
    (re.compile(r"Option '(.*)' does not take a value\."), "la opción {0} no lleva valor"),
    (re.compile(r"Argument '(.*)' takes (\d+) values\."), "el argumento {0} lleva {1} valores"),
]
_INNER: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Input should be a valid integer.*", re.S), "se esperaba un número entero"),
    (re.compile(r"Input should be a valid number.*", re.S), "se esperaba un número"),
    (re.compile(r"Input should be a valid boolean.*", re.S), "se esperaba true o false"),
    (re.compile(r"'(.*)' is not one of (.*)\.", re.S), "«{0}» no es una de: {1}"),
    (re.compile(r"(.*) is not in the range (.*)\.", re.S), "{0} está fuera del rango {1}"),
    (re.compile(r"(?:File|Path|Directory) '(.*)' does not exist\.", re.S), "no existe «{0}»"),
    (re.compile(r"Value (.*) is not a valid (.*)\.", re.S), "{0} no es un valor válido"),
]
_FIELD = re.compile(r"\{(\d)(\*|\^|\?\((.*?)\))?\}")  # {n}, {n*} translated, {n^} upper, {n?(…)}


def _quote(text: str) -> str:
    """``'--keep'`` (click's quoting) → ``«--keep»``."""
    return re.sub(r"'([^']*)'", r"«\1»", text)


def _apply(pattern: re.Pattern[str], template: str, text: str,
           inner: bool) -> str | None:
    m = pattern.fullmatch(text.strip())
    if m is None:
        return None
    groups = m.groups()

    def field(f: re.Match[str]) -> str:
        value = groups[int(f[1])] if int(f[1]) < len(groups) else None
        if f[2] == "*":
            return translate(value or "", inner=True)
        if f[2] == "^":
            return (value or "").upper()
        if f[2]:  # "{n?(text)}": the text only when group n matched
            return f" {f[3].replace('{' + f[1] + '}', _quote(value))}" if value else ""
        return _quote(value or "")

    return _FIELD.sub(field, template)


def translate(text: str, *, inner: bool = False) -> str:
    """One of click's English usage messages in Spanish (unknown ones are kept as they are)."""
    for pattern, template in _INNER if inner else _OUTER:
        done = _apply(pattern, template, text, inner)
        if done is not None:
            return done
    return text


def usage_message(exc: Any) -> str:
    """What a click ``UsageError`` says, in Spanish."""
    return translate(exc.format_message())
