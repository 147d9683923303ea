"""Append an entry at each activation (and at the takedown), then publish the chain again.

Called right after the ledger records an activation, under the publication lock: the
corte is already live, so a failure here never undoes a publication — it is said loudly
(``integrity_failed`` in the ledger) and the next activation carries the chain on.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from difusor.config import Config
from difusor.integrity.chain import GENESIS, canonical, entry_hash
from difusor.integrity.published import write_chain, write_manifest
from difusor.integrity.signing import key_path, load_or_create, public_b64, sign
from difusor.ledger import ActivationRow, Ledger
from difusor.paths import StateLayout
from difusor.store.manifest import Manifest


def _append(cfg: Config, ledger: Ledger, fields: dict[str, Any]) -> dict[str, Any]:
    key = load_or_create(key_path(cfg))

    def build(prev: str | None, seq: int) -> tuple[str, str]:
        body = {**fields, "seq": seq, "site": cfg.site_name or cfg.site.name,
                "prev": prev or GENESIS}
        digest = entry_hash(body)
        return digest, canonical({**body, "hash": digest,
                                  "sig": sign(key, bytes.fromhex(digest))}).decode()

    entry = ledger.chain_append(build)
    write_chain(StateLayout(cfg.state_dir).integrity, ledger.chain(), site=entry["site"],
                url=str(cfg.site.url), public=public_b64(key),
                page_size=cfg.integrity.page_size)
    return entry


def record_activation(cfg: Config, ledger: Ledger, manifest: Manifest,
                      activation: ActivationRow) -> dict[str, Any] | None:
    """The entry for ``activation`` of ``manifest``; None (and an ``integrity_failed`` event)
    when it could not be written."""
    try:
        digest = write_manifest(StateLayout(cfg.state_dir).integrity, manifest)
        release = ledger.release(manifest.release_id)
        package = ledger.package(release.package_id) if release and release.package_id else None
        return _append(cfg, ledger, {
            "kind": activation.cause if activation.cause in ("publish", "rollback") else
            "recovery", "corte": manifest.release_id, "corte_time": manifest.corte_time,
            "package_sha256": manifest.package_sha256, "manifest_root": digest,
            "files": len(manifest.files),
            "received_at": package["received_at"] if package else None,
            "live_at": activation.at})
    except (OSError, ValueError, sqlite3.Error) as exc:
        ledger.event("integrity_failed", f"no pude escribir la cadena pública de cortes: {exc}",
                     release_id=manifest.release_id, detail={"error": repr(exc)})
        return None


def record_takedown(cfg: Config, ledger: Ledger, at: str, kind: str = "takedown"
                    ) -> dict[str, Any] | None:
    """The site serves no corte any more: ``takedown`` (final) or ``reset`` (a test site)."""
    try:
        return _append(cfg, ledger, {
            "kind": kind, "corte": None, "corte_time": None, "package_sha256": None,
            "manifest_root": None, "files": 0, "received_at": None, "live_at": at})
    except (OSError, ValueError, sqlite3.Error) as exc:
        ledger.event("integrity_failed", f"no pude cerrar la cadena pública de cortes: {exc}",
                     detail={"error": repr(exc)})
        return None
