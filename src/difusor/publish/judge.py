"""Judging a verified package against what was published: a repeat, a corte to publish, or a
refusal; and the new corte's files (an incremental package is laid over the live corte)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from difusor.errors import PackageRefused
from difusor.ledger import Ledger
from difusor.package.corte import corte_id
from difusor.package.names import check_conflicts
from difusor.package.reader import VerifiedPackage
from difusor.package.verdict import check_clock, repeats
from difusor.store.manifest import FileEntry, Manifest, ManifestStore
from difusor.store.mediatypes import media_type

Changes = tuple[list[str], list[str]]  # (changed or new paths, removed paths)


def judge(v: VerifiedPackage, live: Manifest | None, *, force: bool, ledger: Ledger,
          manifests: ManifestStore, zone: ZoneInfo, max_ahead_minutes: float) -> Manifest | None:
    """The published corte this package merely repeats (a no-op, forced or not), None for a
    corte to publish; refuses a corte from the future, and an older corte or the same corte
    with other content unless forced."""
    cid = corte_id(v.corte.when, zone)
    check_clock(v.corte.when, datetime.now(UTC), max_ahead_minutes, cid)
    # Only cortes that went live count: one stored by a run that died before activating it is
    # finished by publishing again.
    same = [r for r in ledger.releases_for_corte(v.corte.when.isoformat())
            if ledger.ever_activated(r.id) and manifests.exists(r.id)]
    package = {p: f.sha256 for p, f in v.files.items()}
    for row in same:
        published = live if live and row.id == live.release_id else manifests.load(row.id)
        if repeats(v.kind, package, {p: e.sha256 for p, e in published.files.items()}):
            return published
    if live and not force and v.corte.when < datetime.fromisoformat(live.corte_time):
        raise PackageRefused(
            "older_corte",
            f"el corte del paquete ({cid}) es anterior al corte en línea ({live.release_id}); "
            "usa --force solo si la autoridad lo pide",
        )
    if same and not force:
        raise PackageRefused(
            "same_corte_different",
            f"ya se publicó el corte {cid} con otro contenido; si la autoridad lo "
            "corrigió, publica con --force",
        )
    return None


def merged(v: VerifiedPackage, live: Manifest | None
           ) -> tuple[dict[str, FileEntry], Changes | None]:
    """The new corte's files (the package's alone, or laid over the live corte's) and, for an
    incremental package, what changed (known without comparing the whole site)."""
    files: dict[str, FileEntry] = {}
    if v.kind == "incremental":
        if live is None:
            raise PackageRefused(
                "no_base",
                "es un paquete incremental y todavía no hay un corte en línea sobre el cual "
                "aplicarlo; publica primero un paquete completo",
            )
        check_conflicts(v.files, live.files, live.folders())
        files.update(live.files)
    for path, f in v.files.items():
        files[path] = FileEntry(f.sha256, f.size, media_type(path))
    if v.kind != "incremental" or live is None:
        return files, None
    changed = sorted(p for p in v.files if live.files.get(p) != files[p])
    return files, (changed, [])


def new_release_id(cid: str, ledger: Ledger) -> str:
    """The corte id, or ``-2``, ``-3``… for a corrected corte; an id whose release never went
    live (its publication was interrupted) is reused."""
    candidate, n = cid, 1
    while ledger.release(candidate) is not None and ledger.ever_activated(candidate):
        n += 1
        candidate = f"{cid}-{n}"
    return candidate
