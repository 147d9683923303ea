"""The ``difusor`` command's entry (also ``python -m difusor``): what can start before the CLI's
imports does, then the CLI runs.

Importing the CLI (typer, rich, pydantic and the config models) takes ≈ 0.3 s on one core.
Meanwhile, ``analytics ingest`` of a large log has its lookup helper warm up on the other core
(``lookups.prestart``); and the garbage collector waits for the imports, then freezes what they
built: those objects live as long as the process, so no later collection walks them.
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    from difusor.analytics.lookups import prestart  # (light: no pydantic, no DuckDB)

    prestart(sys.argv[1:])
    gc.disable()
    try:
        from difusor import cli
    finally:
        gc.freeze()
        gc.enable()
    cli.main()


if __name__ == "__main__":
    main()
