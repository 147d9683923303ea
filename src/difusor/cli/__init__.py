"""The ``difusor`` command: a thin layer over the library objects.

One module per family of commands (``configure``, ``publishing``, ``services``, ``monitoring``,
``analytics``, ``shield``, ``simulate``), what they share (``kit``), typer's words in Spanish
(``spanish``), and ``app``, which assembles the command tree in one table and decides what the
operator sees on failure. ``prelude`` is what ``python -m difusor`` reads before any of them.

Importing this package imports nothing else (``main`` loads the app when it runs), so that the
launcher can read ``cli.prelude`` before typer and pydantic are loaded.
"""

from __future__ import annotations


def main() -> None:
    from difusor.cli.app import main as run

    run()
