"""Rollback: an earlier stored corte live again, everywhere the new one went (origins, CDN)."""

from __future__ import annotations

from difusor.errors import NotFound
from difusor.integrity.record import record_activation
from difusor.publish.activate import live_release
from difusor.publish.publisher import Publisher


def rollback(publisher: Publisher, release_id: str | None = None) -> str:
    """Make ``release_id`` (default: the one live before the current) live; returns it."""
    p = publisher
    with p.lock():
        live = live_release(p.layout)
        target = release_id or _previous(p, live)
        if target is None:
            raise NotFound("no hay un corte anterior al cual volver")
        if not p.manifests.exists(target):
            raise NotFound(
                f"el corte {target} no existe o ya fue depurado (difusor status lo lista)"
            )
        if target == live:
            raise NotFound(f"el corte {target} ya es el que está en línea")
        manifest = p.manifests.load(target)
        generation, _report = p.switch(manifest, live, "rollback", None)
        activation = p.ledger.activated(
            target, live, "rollback", None,
            message=f"vuelta atrás: corte {target} en línea (antes {live})",
        )
        record_activation(p.cfg, p.ledger, manifest, activation)
        p.after_switch(target, generation)
    return target


def _previous(p: Publisher, live: str | None) -> str | None:
    for act in p.ledger.activations(limit=1000):
        if act.release_id != live and p.manifests.exists(act.release_id):
            return act.release_id
    return None
