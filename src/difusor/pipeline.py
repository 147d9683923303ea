"""The publishing pipeline: receive → package → store → publish, one package at a time.

Each stage produces what the next one reads; this module only drives them in order under the
publish lock and writes the ledger. A refused package changes nothing live: its new objects stay
in a staging folder that is thrown away, and its original goes to ``quarantine/`` with the reason.
A ``SIGKILL`` at any point leaves the previous corte (or the new one, complete) live;
``recover`` tidies up after it the next time anything takes the lock.

With origins besides the embedded server (``[[origins]]``), activation is two-phase: the corte's
tree of files is materialised first (the origins copy from it), staged on every origin, then
switched on every origin together, the local activation among them (see
``difusor.publish.origins``). Without them, activation is the one local step it always was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.errors import BusyError, NotFound, PackageRefused
from difusor.ledger import Ledger, ReleaseRow, utcnow
from difusor.package.corte import corte_id
from difusor.package.names import check_conflicts, folders
from difusor.package.reader import Progress, VerifiedPackage, read_package
from difusor.package.verdict import check_clock, repeats, resent_message
from difusor.paths import StateLayout, fsync_dir
from difusor.publish.activate import (
    activate,
    bump_generation,
    ensure_generation,
    live_release,
    point_site,
    site_release,
    wait_served,
)
from difusor.publish.origins import (
    JOURNAL,
    Context,
    Origin,
    OriginSet,
    Release,
    SwitchReport,
    has_remote,
    load_origins,
    origin_settings,
)
from difusor.receive.intake import SIDECAR_SUFFIX, Intake, hash_file, original_name, take_in
from difusor.store.layout import StoreLayout
from difusor.store.manifest import FileEntry, Manifest, ManifestStore, changed_paths
from difusor.store.mediatypes import compressible, media_type
from difusor.store.objects import ObjectStore, Staging, sync_filesystem
from difusor.store.releases import ReleaseDirs
from difusor.store.space import no_space_refusal, out_of_space

LOCK_TIMEOUT = 120.0
KIND_NAMES = {"full": "completo", "incremental": "incremental", "database": "base de datos"}


@dataclass
class PublishOutcome:
    status: str  # published | unchanged
    release_id: str
    corte_time: str
    package_id: int
    kind: str
    files: int
    changed: int
    message: str
    timings: dict[str, float] = field(default_factory=dict)
    generation: int = 0  # what servers report once they serve this corte
    origins: dict[str, str] = field(default_factory=dict)  # name → en línea | fuera de rotación
    switch_window: tuple[float, float] | None = None  # wall clock, first switch start → last end


@dataclass
class GcOutcome:
    releases: list[str]
    objects: int
    freed: int


class Publisher:
    def __init__(self, cfg: Config, ledger: Ledger, *, progress: Progress | None = None,
                 origins: list[Origin] | None = None) -> None:
        """``origins``: origins besides the configured ones (test doubles)."""
        self.cfg = cfg
        self.ledger = ledger
        self.progress = progress
        self.state = StateLayout(cfg.state_dir)
        self.state.create()
        self.layout = StoreLayout(self.state.store)
        self.layout.create()
        ensure_generation(self.layout)
        fsync = cfg.store.fsync
        self.objects = ObjectStore(self.layout.objects, fsync=fsync)
        self.manifests = ManifestStore(self.layout.manifests, fsync=fsync)
        self.dirs = ReleaseDirs(self.layout, self.objects)
        self.zone = ZoneInfo(cfg.site.timezone)
        self.lock_timeout = LOCK_TIMEOUT
        self.log: Callable[[str], None] | None = None  # operator lines (CDN results)
        self.purge_cdn = True  # tests and drills that purge by hand turn it off
        self._live: Manifest | None = None
        origin_settings(cfg)  # a bad [[origins]] fails now, before any package is read
        self._extra_origins = origins or []
        self._origins: OriginSet | None = None
        self._switched: tuple[str, set[str]] = ("", set())  # the last switch: corte, origins
        if has_remote(cfg):
            _ = self.origins  # the drivers check their values now too

    @property
    def two_phase(self) -> bool:
        """Whether activating means staging and switching several origins."""
        return has_remote(self.cfg) or bool(self._extra_origins)

    @property
    def origins(self) -> OriginSet:
        """Every origin, local first; the drivers load on first use."""
        if self._origins is None:
            ctx = Context(self.cfg, self.layout, self.objects, self.manifests)
            self._origins = load_origins(ctx, self.ledger, self._release, self._extra_origins)
        return self._origins

    def close(self) -> None:
        """Close the origins' kept connections (an SSH master, say)."""
        if self._origins is not None:
            self._origins.close()

    def _live_manifest(self) -> Manifest | None:
        """The live corte's manifest, kept between publications (parsing a national one costs
        tens of milliseconds); re-read whenever ``current`` names another release."""
        live_id = live_release(self.layout)
        if live_id is None:
            return None
        if self._live is None or self._live.release_id != live_id:
            self._live = self.manifests.load(live_id)
        return self._live

    # -- the lock and recovery ----------------------------------------------------------

    @contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        timeout = self.lock_timeout if timeout is None else timeout
        fd = os.open(self.state.publish_lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise BusyError(
                            f"otra publicación sigue en curso ({self.state.publish_lock}); "
                            "reintenta en unos segundos"
                        ) from None
                    time.sleep(0.05)
            self.recover()
            yield
        finally:
            os.close(fd)

    def recover(self) -> None:
        """Finish or tidy what an interrupted run left: temp folders, an activation the ledger
        missed, copies still in ``incoming/``, the live corte's variants and spare."""
        for folder in (self.layout.tmp, self.layout.build):
            for leftover in folder.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)
        for leftover in [*self.layout.root.glob(".current.*"), *self.layout.root.glob(".site.*"),
                         *self.layout.root.glob(f".{JOURNAL}.*"),
                         *self.layout.manifests.glob(".*.tmp"), *self.layout.packs.glob(".*")]:
            leftover.unlink(missing_ok=True)
        live = live_release(self.layout)
        last = self.ledger.last_activation()
        if live and (last is None or last.release_id != live):
            row = self.ledger.release(live)
            self.ledger.activated(
                live, last.release_id if last else None, "recovery",
                row.package_id if row else None,
                message=f"corte {live} en línea (activación recuperada tras una interrupción)",
            )
            bump_generation(self.layout)
        if (self.layout.root / JOURNAL).exists():  # a two-phase switch was cut short
            self.origins.recover(live)
        for leftover in sorted(self.state.incoming.iterdir()):
            self._recover_copy(leftover)
        if live and (site_release(self.layout) != live or not (self.layout.spare / live).is_dir()):
            self.finish(live)  # the spare is made last: without it, finishing was cut short

    def _recover_copy(self, path: Path) -> None:
        if path.name.endswith(SIDECAR_SUFFIX):
            return  # moves with its package
        if path.name.startswith(".") and path.name.endswith(".part"):
            path.unlink(missing_ok=True)  # an unfinished copy; the source is still where it was
            return
        row = self.ledger.package_by_copy(path.name)
        if row is None:  # copied, but the run died before the ledger heard of it
            sha, size = hash_file(path)
            pid = self.ledger.package_received(original_name(path.name), sha, size, path.name)
            row = self.ledger.package(pid)
            assert row is not None
        intake = Intake.resume(path, row["name"], row["sha256"], row["size"])
        if row["state"] in ("refused", "failed"):
            kept = intake.quarantine(self.state.quarantine, row["reason_code"] or "", row["reason"] or "")
            self.ledger.package_update(row["id"], kept_at=str(kept))
            return
        kept = intake.keep(self.state.packages)
        if row["state"] in ("activated", "duplicate"):
            self.ledger.package_update(row["id"], kept_at=str(kept))
            return
        self.ledger.package_update(row["id"], state="interrupted", kept_at=str(kept))
        self.ledger.event(
            "interrupted", f"publicación interrumpida de {row['name']}; original conservado",
            package_id=row["id"], detail={"kept_at": str(kept)},
        )

    # -- publishing ---------------------------------------------------------------------

    def publish(
        self,
        source: Path,
        *,
        force: bool = False,
        on_live: Callable[[PublishOutcome], None] | None = None,
        finish: bool = True,
        name: str | None = None,
        sidecar: Path | None = None,
        link: bool = False,
    ) -> PublishOutcome:
        """Verify and publish one package; raises PackageRefused when it must not go live.

        ``on_live`` is called the moment the corte is live; ``finish`` then materialises it
        (loose objects, variants, the tree for nginx, the next spare), off the latency path
        but still under the lock. ``name``, ``sidecar`` and ``link`` are for packages taken
        from the inbox (see :func:`difusor.receive.intake.take_in`).
        """
        with self.lock():
            outcome = self._publish(source, force, name, sidecar, link)
            if on_live:
                on_live(outcome)
            if outcome.status == "published":
                self._await_servers(outcome.release_id, outcome.generation)
                self._after_live(outcome.release_id)
                if finish:
                    self.finish(outcome.release_id)
        return outcome

    def _after_live(self, release_id: str) -> None:
        """Once the origins serve the new corte: purge it at the CDN and check the edge serves
        it (quick when no [[cdn]] is configured; never raises for a CDN failure)."""
        if not (self.cfg.cdn and self.purge_cdn):
            return
        from difusor.publish.cdn import after_activation

        after_activation(self.cfg, self.ledger, release_id, log=self.log)

    def _await_servers(self, release_id: str, generation: int) -> None:
        """Record when every running server worker serves the new corte, and hold the heavy
        post-activation work until then, so it does not slow that switch down."""
        served = wait_served(self.layout, generation)
        if served is None:
            self.ledger.event(
                "served_late", f"algún proceso del servidor tardó más de 1 s en servir el corte "
                f"{release_id}", release_id=release_id,
            )
        elif served[0]:
            workers, seconds = served
            self.ledger.event(
                "served", f"corte {release_id} servido por {workers} procesos del servidor "
                f"{seconds * 1000:.0f} ms después de activarlo", release_id=release_id,
                detail={"workers": workers, "ms": round(seconds * 1000, 1)},
            )

    def _publish(self, source: Path, force: bool, name: str | None, sidecar: Path | None,
                 link: bool) -> PublishOutcome:
        t = _Timer()
        intake = None
        try:
            intake = take_in(source, self.state.incoming, name=name, sidecar=sidecar, link=link)
            package_id = self.ledger.package_received(
                intake.name, intake.sha256, intake.size, intake.copy_name
            )
        except Exception as exc:
            if not out_of_space(exc):
                raise
            if intake is not None:
                intake.path.unlink(missing_ok=True)
            raise no_space_refusal(exc, self.cfg.state_dir) from None
        t.mark("recibido")
        live = self._live_manifest()
        staging = self.objects.staging(
            self.layout.tmp, known={e.sha256 for e in live.files.values()} if live else None
        )
        try:
            verified = read_package(
                intake.path,
                name=intake.name,
                package_sha256=intake.sha256,
                sidecar_text=intake.sidecar_text,
                settings=self.cfg.package,
                corte_settings=self.cfg.corte,
                zone=self.zone,
                sink=staging,
                progress=self.progress,
                site_folders={p.split("/", 1)[0] for p in live.files if "/" in p} if live else (),
            )
            t.mark("verificado")
            self._verified(package_id, verified)
            return self._store_and_activate(intake, package_id, verified, staging, force, live, t)
        except PackageRefused as refusal:
            staging.discard()
            self._refused(intake, package_id, refusal)
            raise
        except BaseException as exc:
            staging.discard()
            if out_of_space(exc):
                refusal = no_space_refusal(exc, self.cfg.state_dir)
                self._out_of_space(intake, package_id, refusal)
                raise refusal from None
            if isinstance(exc, Exception):
                self._failed(intake, package_id, exc)
            raise

    def _verified(self, package_id: int, v: VerifiedPackage) -> None:
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

    def _store_and_activate(
        self,
        intake: Intake,
        package_id: int,
        v: VerifiedPackage,
        staging: Staging,
        force: bool,
        live: Manifest | None,
        t: _Timer,
    ) -> PublishOutcome:
        corte_iso = v.corte.when.isoformat()
        duplicate = self._judge(v, live, force)
        if duplicate is not None:
            staging.discard()
            self.ledger.package_update(
                package_id, state="duplicate", release_id=duplicate.release_id,
                kept_at=str(self.state.packages / intake.copy_name),
            )
            intake.keep(self.state.packages)
            msg = resent_message(duplicate.release_id, live.release_id if live else None)
            self.ledger.event("duplicate", msg, package_id=package_id,
                              release_id=duplicate.release_id)
            return PublishOutcome("unchanged", duplicate.release_id, corte_iso, package_id,
                                  v.kind, len(duplicate.files), 0, msg, t.laps)
        files, changes = self._merged(v, live)

        release_id = self._new_release_id(corte_id(v.corte.when, self.zone))
        staging.commit(release_id)
        t.mark("objetos")
        live_id = live.release_id if live else None
        manifest = Manifest(
            release_id=release_id,
            corte_time=corte_iso,
            corte_source=v.corte.source,
            package_name=intake.name,
            package_sha256=intake.sha256,
            kind=v.kind,
            base_id=live_id if v.kind == "incremental" else None,
            created=utcnow(),
            files=files,
        )
        if v.kind == "incremental" and live is not None:  # same site, a few more folders
            manifest._folders = live.folders() | folders(v.files)
        self.manifests.save(manifest, base=live, changes=changes)
        self._live = manifest
        if self.cfg.store.fsync:  # the files are fsynced; their names must be durable too
            fsync_dir(self.layout.packs)
            fsync_dir(self.layout.manifests)
        t.mark("manifiesto")
        self.ledger.release_stored(
            ReleaseRow(release_id, corte_iso, v.corte.source, package_id, intake.sha256, v.kind,
                       manifest.base_id, len(files), manifest.total_bytes, manifest.created, None)
        )
        report = None
        if self.two_phase:
            report = self._activate_everywhere(manifest, live_id, "publish", package_id, t)
            generation = report.generation
        else:
            generation = activate(self.layout, release_id, fsync=self.cfg.store.fsync)
        t.mark("activado")
        changed, removed = changes if changes is not None else changed_paths(live, manifest)
        self.ledger.activated(
            release_id, live_id, "publish", package_id,
            message=f"corte {release_id} en línea ({len(changed)} archivos nuevos o cambiados)",
        )
        # Ledger first: recovery moves a copy left in incoming/ to where the ledger says it is.
        self.ledger.package_update(package_id, kept_at=str(self.state.packages / intake.copy_name))
        intake.keep(self.state.packages)
        self.ledger.event("timings", "tiempos de publicación", package_id=package_id,
                          release_id=release_id, detail=t.laps)
        return PublishOutcome(
            "published", release_id, corte_iso, package_id, v.kind, len(files),
            len(changed) + len(removed),
            f"corte {release_id} en línea ({v.corte.when.astimezone(self.zone):%d/%m/%Y %H:%M}), "
            f"{len(files)} archivos, {len(changed)} nuevos o cambiados"
            + (_origins_note(report) if report else ""),
            t.laps, generation,
            report.states() if report else {}, report.window if report else None,
        )

    def _activate_everywhere(self, manifest: Manifest, previous: str | None, cause: str,
                             package_id: int | None, t: _Timer | None = None) -> SwitchReport:
        """Two-phase activation: materialise the tree, stage it on every origin, switch all.

        Materialising before the switch is what two-phase costs in latency: the new objects
        are written loose and the tree of links is built (otherwise both happen just after the
        corte is live). New compressed variants still wait until after: ``finish`` makes them
        and adds them to the origins that switched."""
        release = self._release(manifest.release_id, manifest,
                                rebuild=not self.ledger.ever_activated(manifest.release_id))
        if t:
            t.mark("materializado")
        staged = self.origins.stage(release, previous, package_id=package_id)
        if t:
            t.mark("preparado")
        report = self.origins.switch(staged, cause=cause, package_id=package_id)
        self._switched = (release.id, {r.origin for r in report.results if r.ok})
        return report

    def _release(self, release_id: str, manifest: Manifest | None = None, *,
                 rebuild: bool = False) -> Release:
        """A stored corte with its tree of files on disk, as origins stage it."""
        manifest = manifest or self.manifests.load(release_id)
        self._materialise(manifest, rebuild=rebuild, variants=False)
        return Release(release_id, manifest, self.dirs.path(release_id))

    @staticmethod
    def _merged(v: VerifiedPackage, live: Manifest | None
                ) -> tuple[dict[str, FileEntry], tuple[list[str], list[str]] | None]:
        """The new corte's files (the package's alone, or laid over the live corte's) and, for
        an incremental package, what changed (known without comparing the whole site)."""
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

    def _judge(self, v: VerifiedPackage, live: Manifest | None, force: bool) -> Manifest | None:
        """The published corte this package merely repeats (a no-op, forced or not), None for a
        corte to publish; refuses a corte from the future, and an older corte or the same
        corte with other content unless forced."""
        cid = corte_id(v.corte.when, self.zone)
        check_clock(v.corte.when, datetime.now(UTC), self.cfg.corte.max_ahead_minutes, cid)
        # Only cortes that went live count: one stored by a run that died before activating it
        # is finished by publishing again.
        same = [r for r in self.ledger.releases_for_corte(v.corte.when.isoformat())
                if self.ledger.ever_activated(r.id) and self.manifests.exists(r.id)]
        package = {p: f.sha256 for p, f in v.files.items()}
        for row in same:
            published = live if live and row.id == live.release_id else self.manifests.load(row.id)
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

    def _new_release_id(self, cid: str) -> str:
        """The corte id, or ``-2``, ``-3``… for a corrected corte; an id whose release never went
        live (its publication was interrupted) is reused."""
        candidate, n = cid, 1
        while self.ledger.release(candidate) is not None and self.ledger.ever_activated(candidate):
            n += 1
            candidate = f"{cid}-{n}"
        return candidate

    def _refused(self, intake: Intake, package_id: int, refusal: PackageRefused) -> None:
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

    def _out_of_space(self, intake: Intake, package_id: int, refusal: PackageRefused) -> None:
        """Refused for now, not quarantined: the copy is removed (room is what is missing), the
        original stays where it came from, for the retry."""
        intake.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError, sqlite3.Error):  # the ledger may be out of room too
            self.ledger.package_update(package_id, state="refused", reason_code=refusal.code,
                                       reason=refusal.message)
            self.ledger.event("refused", f"paquete rechazado: {refusal.message}",
                              package_id=package_id, detail={"code": refusal.code, "retry": True})

    def _failed(self, intake: Intake, package_id: int, exc: Exception) -> None:
        reason = f"error interno: {type(exc).__name__}: {exc}"
        self.ledger.package_update(
            package_id, state="failed", reason_code="internal_error", reason=reason,
            kept_at=str(self.state.quarantine / intake.copy_name),
        )
        self.ledger.event("failed", reason, package_id=package_id)
        with contextlib.suppress(OSError):
            intake.quarantine(self.state.quarantine, "internal_error", reason)

    # -- after a corte is live ----------------------------------------------------------

    def finish(self, release_id: str) -> None:
        """Everything that can wait until the corte is live: loose objects out of the pack,
        compressed variants, the tree of hard links for nginx (then ``site`` moves to it) and a
        spare for the next corte. Runs at a lower CPU priority, so the servers' switch to the
        new corte is not slowed down by it."""
        done: list[BaseException] = []

        def work() -> None:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            try:
                self._finish(release_id)
            except BaseException as exc:  # handed to the caller's thread
                done.append(exc)

        thread = threading.Thread(target=work, name="difusor-finish")
        thread.start()
        thread.join()
        if done:
            raise done[0]

    def _finish(self, release_id: str) -> None:
        manifest = self.manifests.load(release_id)
        unpacked, made, links = self._materialise(manifest)
        if self.cfg.store.fsync:
            sync_filesystem(self.layout.root)
        point_site(self.layout, release_id, fsync=self.cfg.store.fsync)
        bump_generation(self.layout)  # servers pick up loose objects and variants
        switched_id, names = self._switched
        if switched_id == release_id and names and made:
            self.origins.add_variants(Release(release_id, manifest, self.dirs.path(release_id)),
                                      names)
        self.ledger.event(
            "materialized",
            f"árbol de archivos del corte {release_id} listo para nginx ({made} variantes nuevas)",
            release_id=release_id, detail={"unpacked": unpacked, "variants": made, "links": links},
        )
        self.dirs.prepare_spare(release_id)

    def _materialise(self, manifest: Manifest, *, rebuild: bool = False, variants: bool = True
                     ) -> tuple[int, int, int]:
        """Loose objects, compressed variants (unless told not to) and the release's tree of
        hard links; returns (objects unpacked, variants made, variant links added).
        ``rebuild``: a tree already there is made again (it may be left by an interrupted
        publication of another package for the same corte)."""
        store = self.cfg.store
        unpacked = self.objects.unpack(self.layout.tmp)
        shas = [
            e.sha256 for e in manifest.files.values()
            if compressible(e.media_type) and e.size >= store.compress_min_bytes
        ] if variants else []
        made = self.objects.make_variants(
            shas, gzip_level=store.gzip_level, brotli_quality=store.brotli_quality,
            tmp_root=self.layout.tmp,
        )
        links = 0
        if self.dirs.exists(manifest.release_id) and not rebuild:
            links = self.dirs.add_variant_links(manifest)  # built before: variants may be new
        else:
            tree = site_release(self.layout)
            base = self.manifests.load(tree) if tree and self.manifests.exists(tree) else None
            self.dirs.build(manifest, base=base)
        return unpacked, made, links

    # -- rollback and collection --------------------------------------------------------

    def rollback(self, release_id: str | None = None) -> str:
        with self.lock():
            live = live_release(self.layout)
            target = release_id or self._previous(live)
            if target is None:
                raise NotFound("no hay un corte anterior al cual volver")
            if not self.manifests.exists(target):
                raise NotFound(
                    f"el corte {target} no existe o ya fue depurado (difusor status lo lista)"
                )
            if target == live:
                raise NotFound(f"el corte {target} ya es el que está en línea")
            if self.two_phase:
                generation = self._activate_everywhere(
                    self.manifests.load(target), live, "rollback", None).generation
            else:
                generation = activate(self.layout, target, fsync=self.cfg.store.fsync)
            self.ledger.activated(
                target, live, "rollback", None,
                message=f"vuelta atrás: corte {target} en línea (antes {live})",
            )
            self._live = None
            self._await_servers(target, generation)
            self._after_live(target)
            self.finish(target)
        return target

    def _previous(self, live: str | None) -> str | None:
        for act in self.ledger.activations(limit=1000):
            if act.release_id != live and self.manifests.exists(act.release_id):
                return act.release_id
        return None

    def gc(self, keep: int, progress: Progress | None = None) -> GcOutcome:
        if keep < 1:
            raise NotFound("--keep debe ser al menos 1")
        with self.lock():
            live = live_release(self.layout)
            ids = sorted(
                set(self.manifests.ids()) | set(self.dirs.ids()),
                key=lambda r: self._created(r),
            )
            keep_ids = set(ids[-keep:]) | {r for r in (live, site_release(self.layout)) if r}
            drop = [r for r in ids if r not in keep_ids]
            for rid in drop:
                self.dirs.remove(rid)
                self.manifests.remove(rid)
                if self.ledger.release(rid):
                    self.ledger.release_collected(rid)
            referenced: set[str] = set()
            for rid in keep_ids:
                if self.manifests.exists(rid):
                    referenced.update(e.sha256 for e in self.manifests.load(rid).files.values())
            candidates = [s for s in self.objects.all() if s not in referenced]
            freed = 0
            for n, sha in enumerate(candidates, start=1):
                freed += self.objects.remove(sha)
                if progress:
                    progress(n, len(candidates))
            pruned = self.origins.prune(keep_ids) if self.two_phase else {}
            self.ledger.event(
                "gc", f"depuración: {len(drop)} cortes y {len(candidates)} objetos ({freed} bytes)",
                detail={"releases": drop, "objects": len(candidates), "freed": freed,
                        "keep": keep, **({"origins": pruned} if pruned else {})},
            )
            return GcOutcome(drop, len(candidates), freed)

    def _created(self, release_id: str) -> str:
        row = self.ledger.release(release_id)
        if row:
            return row.created_at
        try:
            return self.manifests.load(release_id).created
        except (OSError, ValueError):
            return ""


def _origins_note(report: SwitchReport) -> str:
    out = f"; fuera de rotación: {', '.join(report.out)}" if report.out else ""
    window = f" en {report.window_ms:.0f} ms" if report.window_ms is not None else ""
    switched = sum(r.ok for r in report.results)
    return f"; {switched} orígenes cambiados{window}{out}"


class _Timer:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 6)
        self.last = now
