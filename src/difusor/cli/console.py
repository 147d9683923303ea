"""``difusor console user add|list|remove`` and ``difusor console serve``: the operator's console
(its accounts here; ``difusor run`` serves it on ``[console] listen``)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from difusor import config as config_mod
from difusor.cli.kit import DEFAULT_CONFIG, ConfigOpt, existing_state, out
from difusor.errors import DifusorError
from difusor.paths import StateLayout

HELP = "Consola del operador: sus usuarios (la sirve «difusor run» en \\[console] listen)."
USER_HELP = "Usuarios de la consola (contraseñas con Argon2id)."

NameArg = Annotated[str, typer.Argument(help="Nombre de usuario (minúsculas, dígitos, . _ -).")]


def _store(config: ConfigOpt):  # type: ignore[no-untyped-def]
    from difusor.console.users import UserStore

    cfg = config_mod.load(config)
    existing_state(cfg)
    return UserStore(StateLayout(cfg.state_dir).console_users)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise DifusorError("sin terminal para pedir la contraseña: usa --password-stdin")
    first = getpass.getpass("Contraseña: ")
    if getpass.getpass("Repítela: ") != first:
        raise DifusorError("las contraseñas no coinciden")
    return first


def user_add(
    name: NameArg,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Leer la contraseña de la entrada estándar (una línea).")]
    = False,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Cambiar la contraseña de un usuario que ya existe.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Crea un usuario de la consola (o cambia su contraseña con --replace)."""
    store = _store(config)
    store.add(name, _password(password_stdin), replace=replace)
    out.print(f"Usuario «{name}» {'actualizado' if replace else 'creado'} en {store.path}.",
              markup=False)


def user_list(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Los usuarios de la consola."""
    names = _store(config).names()
    out.print("\n".join(names) if names else "La consola no tiene usuarios todavía.",
              markup=False)


def user_remove(name: NameArg, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Quita un usuario; sus sesiones abiertas terminan en ese momento."""
    _store(config).remove(name)
    out.print(f"Usuario «{name}» eliminado.", markup=False)


def serve(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Sirve la consola sola, en primer plano (difusor run la inicia por sí mismo)."""
    from difusor.console.server import serve as serve_console

    cfg = config_mod.load(config)
    existing_state(cfg)
    serve_console(cfg, config)


USER_COMMANDS = {"add": user_add, "list": user_list, "remove": user_remove}
COMMANDS = {"serve": serve}
