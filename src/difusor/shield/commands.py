"""``difusor shield status|block|unblock|allow|attack-mode`` (built by the shield issue)."""

from __future__ import annotations

import typer

shield_app = typer.Typer(help="Escudo contra ataques: estado, bloqueos, lista blanca y modo "
                         "ataque.", no_args_is_help=True)
