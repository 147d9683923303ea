"""What the ledger and the folders keep of each package's fate: verified, refused (quarantined
with its reason), out of space (left for the retry), failed (a bug: quarantined too)."""

from __future__ import annotations

import contextlib
import sqlite3

from difusor.errors import PackageRefused
from difusor.ledger import Ledger
from difusor.package.reader import VerifiedPackage
from difusor.paths import StateLayout
from difusor.receive.intake import Intake

KIND_NAMES = {"full": "completo", "incremental": "incremental", "database": "base de datos"}


class PackageRecords:
    def __init__(self, ledger: Ledger, state: StateLayout) -> None:
        self.ledger = ledger
        self.state = state

    def verified(self, package_id: int, v: VerifiedPackage) -> None:
        when = v.corte.when.isoformat()
        self.ledger.package_update(package_id, state="verified", corte_time=when, kind=v.kind)
        self.ledger.event(
            "verified",
            f"paquete verificado: corte {when} ({v.corte.source}), {len(v.files)} archivos, "
            f"{KIND_NAMES.get(v.kind, v.kind)}",
            package_id=package_id,
            detail={"files": len(v.files), "kind": v.kind, "format": v.format,
                    "corte_source": v.corte.source, "checksums": v.checksums,
                    "wrapper": v.wrapper},
        )

    def kept(self, intake: Intake, package_id: int) -> None:
        """An accepted package (published or a repeat) goes to ``packages/``; the ledger first:
        recovery moves a copy left in incoming/ to where the ledger says it is."""
        self.ledger.package_update(package_id, kept_at=str(self.state.packages / intake.copy_name))
        intake.keep(self.state.packages)

    def duplicate(self, intake: Intake, package_id: int, release_id: str, message: str) -> None:
        """A package that repeats a published corte: kept, nothing published."""
        self.ledger.package_update(
            package_id, state="duplicate", release_id=release_id,
            kept_at=str(self.state.packages / intake.copy_name),
        )
        intake.keep(self.state.packages)
        self.ledger.event("duplicate", message, package_id=package_id, release_id=release_id)

    def refused(self, intake: Intake, package_id: int, refusal: PackageRefused) -> None:
        kept = self.state.quarantine / intake.copy_name
        self.ledger.package_update(
            package_id, state="refused", reason_code=refusal.code, reason=refusal.message,
            kept_at=str(kept),
        )
        self.ledger.event(
            "refused", f"paquete rechazado: {refusal.message}", package_id=package_id,
            detail={"code": refusal.code, "quarantine": str(kept)},
        )
        intake.quarantine(self.state.quarantine, refusal.code, refusal.message)

    def out_of_space(self, intake: Intake, package_id: int, refusal: PackageRefused) -> None:
        """Refused for now, not quarantined: the copy is removed (room is what is missing), the
        original stays where it came from, for the retry."""
        intake.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError, sqlite3.Error):  # the ledger may be out of room too
            self.ledger.package_update(package_id, state="refused", reason_code=refusal.code,
                                       reason=refusal.message)
            self.ledger.event("refused", f"paquete rechazado: {refusal.message}",
                              package_id=package_id, detail={"code": refusal.code, "retry": True})

    def failed(self, intake: Intake, package_id: int, exc: Exception) -> None:
        reason = f"error interno: {type(exc).__name__}: {exc}"
        self.ledger.package_update(
            package_id, state="failed", reason_code="internal_error", reason=reason,
            kept_at=str(self.state.quarantine / intake.copy_name),
        )
        self.ledger.event("failed", reason, package_id=package_id)
        with contextlib.suppress(OSError):
            intake.quarantine(self.state.quarantine, "internal_error", reason)
