"""The ledger's event kinds: one list, and a misspelt kind refused instead of written unseen."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import Site

from difusor.ledger import EventKind

SRC = Path(__file__).resolve().parents[1] / "src" / "difusor"


def kinds_written_in_source() -> set[str]:
    """The first argument of every ``….event("kind", …)`` call written as a literal."""
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "event" and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                found.add(node.args[0].value)
    return found


def test_every_kind_the_code_writes_is_declared() -> None:
    written = kinds_written_in_source()
    assert len(written) >= 25  # the walk found the calls
    assert written <= set(EventKind), sorted(written - set(EventKind))


def test_an_unknown_kind_is_refused_and_nothing_is_written(site: Site) -> None:
    before = len(site.ledger.events(limit=10_000))
    with pytest.raises(ValueError, match="publicacion"):
        site.ledger.event("publicacion", "mal escrito")
    assert len(site.ledger.events(limit=10_000)) == before
    site.ledger.event(EventKind.RUN_STARTED, "bien escrito")
    assert site.ledger.events("run_started")[0]["message"] == "bien escrito"
