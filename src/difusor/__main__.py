"""The ``difusor`` command's entry (also ``python -m difusor``): what can start before the CLI's
imports does, then the CLI runs.

Importing the CLI (typer, rich, pydantic and the config models) takes ≈ 0.3 s on one core. For
``analytics ingest`` — a batch command, measured on large logs — two things happen meanwhile:
the lookup helper of a large log warms up on the other core (``lookups.prestart``), and the
garbage collector waits for the imports, then freezes what they built (they live as long as the
process, so no later collection walks them: ≈ 0.1 s less per million lines, teardown
included). Other commands start as they always have: nothing was measured for them.

Every command first silences the third-party warnings known to reach an operator's terminal in
English (``QUIET``): each is named by its message and the module it is attributed to, so a new
warning — or one raised by difusor's own code — still shows.
"""

from __future__ import annotations

import gc
import sys
import warnings

# (message prefix, module): asyncssh's type hints name cryptography's deprecated DSA classes at import
# (cryptography ≥ 51 warns once per name; five lines on every `difusor run`). difusor never uses DSA.
QUIET = ((r"DSA is deprecated", r"asyncssh\."),)


def main() -> None:
    for message, module in QUIET:
        warnings.filterwarnings("ignore", message=message, module=module)
    ingest = sys.argv[1:3] == ["analytics", "ingest"]
    if ingest:
        from difusor.analytics.lookups import prestart  # (light: no pydantic, no DuckDB)

        prestart(sys.argv[1:])
        gc.disable()
    try:
        from difusor import cli
    finally:
        if ingest:
            gc.freeze()
            gc.enable()
    cli.main()


if __name__ == "__main__":
    main()
