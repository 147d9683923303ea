"""The ``difusor`` command's entry (also ``python -m difusor``): a command's prelude (declared in
``cli/prelude.py``) starts before the CLI's imports, then the CLI runs.

Every command first silences the third-party warnings known to reach an operator's terminal in
English (``QUIET``): each is named by its message and the module it is attributed to, so a new
warning — or one raised by difusor's own code — still shows.
"""

from __future__ import annotations

import sys
import warnings

from difusor.cli.prelude import before_imports

# (message prefix, module): asyncssh's type hints name cryptography's deprecated DSA classes at import
# (cryptography ≥ 51 warns once per name; five lines on every `difusor run`). difusor never uses DSA.
QUIET = ((r"DSA is deprecated", r"asyncssh\."),)


def main() -> None:
    for message, module in QUIET:
        warnings.filterwarnings("ignore", message=message, module=module)
    with before_imports(sys.argv[1:]):
        from difusor.cli.app import main as run_cli
    run_cli()


if __name__ == "__main__":
    main()
