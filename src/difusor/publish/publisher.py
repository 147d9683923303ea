"""The publishing pipeline: receive → package → store → publish, one package at a time.

Each stage produces what the next one reads; the ``Publisher`` only drives them in order under
the publish lock. A refused package changes nothing live: its new objects stay in a staging
folder that is thrown away, and its original goes to ``quarantine/`` with the reason
(``records``). A ``SIGKILL`` at any point leaves the previous corte (or the new one, complete)
live; ``recovery`` tidies up after it the next time a publication takes the lock.

With origins besides the embedded server (``[[origins]]``), activation is two-phase: the corte's
tree of files is materialised first (the origins copy from it), staged on every origin, then
switched on every origin together, the local activation among them (see
``difusor.publish.origins``). Without them, activation is the one local step it always was.

Making a ``Publisher`` touches nothing on disk: folders and the generation counter are made the
first time it takes the lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.errors import PackageRefused
from difusor.integrity.record import record_activation
from difusor.ledger import Ledger, ReleaseRow, utcnow
from difusor.package.corte import corte_id
from difusor.package.names import folders
from difusor.package.reader import Progress, VerifiedPackage, read_package
from difusor.package.verdict import resent_message
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
from difusor.publish.judge import judge, merged, new_release_id
from difusor.publish.origins import (
    Context,
    Origin,
    OriginSet,
    Release,
    SwitchReport,
    has_remote,
    load_origins,
    origin_settings,
)
from difusor.publish.outcome import PublishOutcome, Timer, origins_note
from difusor.publish.publock import LOCK_TIMEOUT, publish_lock
from difusor.publish.records import PackageRecords
from difusor.publish.recovery import recover
from difusor.receive.intake import Intake, take_in
from difusor.store.layout import StoreLayout
from difusor.store.manifest import Manifest, ManifestStore, changed_paths
from difusor.store.materialise import Materialised, materialise
from difusor.store.objects import ObjectStore, Staging, sync_filesystem
from difusor.store.releases import ReleaseDirs
from difusor.store.space import no_space_refusal, out_of_space


class Publisher:
    def __init__(self, cfg: Config, ledger: Ledger, *, progress: Progress | None = None,
                 origins: list[Origin] | None = None) -> None:
        """``origins``: origins besides the configured ones (test doubles)."""
        self.cfg = cfg
        self.ledger = ledger
        self.progress = progress
        self.state = StateLayout(cfg.state_dir)
        self.layout = StoreLayout(self.state.store)
        self.records = PackageRecords(ledger, self.state)
        self.zone = ZoneInfo(cfg.site.timezone)
        self.lock_timeout = LOCK_TIMEOUT
        self.log: Callable[[str], None] | None = None  # operator lines (CDN results)
        self.purge_cdn = True  # tests and drills that purge by hand turn it off
        self._live: Manifest | None = None
        origin_settings(cfg)  # a bad [[origins]] fails now, before any package is read
        self._extra_origins = origins or []
        self._origins: OriginSet | None = None
        self._switched: tuple[str, set[str]] = ("", set())  # the last switch: corte, origins
        self._ready = False

    # The stores make their folders when first used, not when the publisher is made.
    @cached_property
    def objects(self) -> ObjectStore:
        return ObjectStore(self.layout.objects, fsync=self.cfg.store.fsync)

    @cached_property
    def manifests(self) -> ManifestStore:
        return ManifestStore(self.layout.manifests, fsync=self.cfg.store.fsync)

    @cached_property
    def dirs(self) -> ReleaseDirs:
        return ReleaseDirs(self.layout, self.objects)

    def prepare(self) -> None:
        """The state and store folders and the generation counter, once."""
        if not self._ready:
            self.state.create()
            self.layout.create()
            ensure_generation(self.layout)
            self._ready = True

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
    def lock(self, timeout: float | None = None, *, recovering: bool = True) -> Iterator[None]:
        """The publish lock; ``recovering``: first tidy what an interrupted run left."""
        self.prepare()
        with publish_lock(self.state.publish_lock,
                          self.lock_timeout if timeout is None else timeout):
            if recovering:
                self.recover()
            yield

    def recover(self) -> None:
        self.prepare()
        recover(self.layout, self.state, self.ledger, origins=lambda: self.origins,
                finish=self.finish, chained=lambda release, activation: record_activation(
                    self.cfg, self.ledger, self.manifests.load(release), activation))

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
                self.after_switch(outcome.release_id, outcome.generation, finish=finish)
        return outcome

    def after_switch(self, release_id: str, generation: int, *, finish: bool = True) -> None:
        """Once a corte is switched on: wait for the servers, purge and verify the CDN (never
        raises for a CDN failure), then the work that can wait (``finish``)."""
        self._await_servers(release_id, generation)
        if self.cfg.cdn and self.purge_cdn:
            from difusor.publish.cdn import after_activation

            after_activation(self.cfg, self.ledger, release_id, log=self.log)
        if finish:
            self.finish(release_id)

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
        t = Timer()
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
            self.records.verified(package_id, verified)
            return self._store_and_activate(intake, package_id, verified, staging, force, live, t)
        except PackageRefused as refusal:
            staging.discard()
            self.records.refused(intake, package_id, refusal)
            raise
        except BaseException as exc:
            staging.discard()
            if out_of_space(exc):
                refusal = no_space_refusal(exc, self.cfg.state_dir)
                self.records.out_of_space(intake, package_id, refusal)
                raise refusal from None
            if isinstance(exc, Exception):
                self.records.failed(intake, package_id, exc)
            raise

    def _store_and_activate(self, intake: Intake, package_id: int, v: VerifiedPackage,
                            staging: Staging, force: bool, live: Manifest | None, t: Timer
                            ) -> PublishOutcome:
        corte_iso = v.corte.when.isoformat()
        duplicate = judge(v, live, force=force, ledger=self.ledger, manifests=self.manifests,
                          zone=self.zone, max_ahead_minutes=self.cfg.corte.max_ahead_minutes)
        if duplicate is not None:
            staging.discard()
            msg = resent_message(duplicate.release_id, live.release_id if live else None)
            self.records.duplicate(intake, package_id, duplicate.release_id, msg)
            return PublishOutcome("unchanged", duplicate.release_id, corte_iso, package_id,
                                  v.kind, len(duplicate.files), 0, msg, t.laps)
        files, changes = merged(v, live)
        release_id = new_release_id(corte_id(v.corte.when, self.zone), self.ledger)
        staging.commit(release_id)
        t.mark("objetos")
        live_id = live.release_id if live else None
        manifest = Manifest(
            release_id=release_id, corte_time=corte_iso, corte_source=v.corte.source,
            package_name=intake.name, package_sha256=intake.sha256, kind=v.kind,
            base_id=live_id if v.kind == "incremental" else None, created=utcnow(), files=files,
        )
        if v.kind == "incremental" and live is not None:  # same site, a few more folders
            manifest._folders = live.folders() | folders(v.files)
        self.manifests.save(manifest, base=live, changes=changes)
        if self.cfg.store.fsync:  # the files are fsynced; their names must be durable too
            fsync_dir(self.layout.packs)
            fsync_dir(self.layout.manifests)
        t.mark("manifiesto")
        self.ledger.release_stored(
            ReleaseRow(release_id, corte_iso, v.corte.source, package_id, intake.sha256, v.kind,
                       manifest.base_id, len(files), manifest.total_bytes, manifest.created, None)
        )
        generation, report = self.switch(manifest, live_id, "publish", package_id, t)
        t.mark("activado")
        changed, removed = changes if changes is not None else changed_paths(live, manifest)
        activation = self.ledger.activated(
            release_id, live_id, "publish", package_id,
            message=f"corte {release_id} en línea ({len(changed)} archivos nuevos o cambiados)",
        )
        record_activation(self.cfg, self.ledger, manifest, activation)
        t.mark("cadena")
        self.records.kept(intake, package_id)
        self.ledger.event("timings", "tiempos de publicación", package_id=package_id,
                          release_id=release_id, detail=t.laps)
        return PublishOutcome(
            "published", release_id, corte_iso, package_id, v.kind, len(files),
            len(changed) + len(removed),
            f"corte {release_id} en línea ({v.corte.when.astimezone(self.zone):%d/%m/%Y %H:%M}), "
            f"{len(files)} archivos, {len(changed)} nuevos o cambiados"
            + (origins_note(report) if report else ""),
            t.laps, generation,
            report.states() if report else {}, report.window if report else None,
        )

    def switch(self, manifest: Manifest, previous: str | None, cause: str,
               package_id: int | None, t: Timer | None = None
               ) -> tuple[int, SwitchReport | None]:
        """Make a stored corte live: locally, or on every origin (two-phase); returns the
        generation servers will report and, when two-phase, the origins' report."""
        self._live = manifest
        if not self.two_phase:
            return activate(self.layout, manifest.release_id, fsync=self.cfg.store.fsync), None
        # Materialising before the switch is what two-phase costs in latency: the new objects
        # are written loose and the tree of links is built (otherwise both happen just after
        # the corte is live). New compressed variants still wait: ``finish`` makes them and
        # adds them to the origins that switched.
        release = self._release(manifest.release_id, manifest,
                                rebuild=not self.ledger.ever_activated(manifest.release_id))
        if t:
            t.mark("materializado")
        staged = self.origins.stage(release, previous, package_id=package_id)
        if t:
            t.mark("preparado")
        report = self.origins.switch(staged, cause=cause, package_id=package_id)
        self._switched = (release.id, {r.origin for r in report.results if r.ok})
        return report.generation, report

    def _release(self, release_id: str, manifest: Manifest | None = None, *,
                 rebuild: bool = False) -> Release:
        """A stored corte with its tree of files on disk, as origins stage it."""
        manifest = manifest or self.manifests.load(release_id)
        self._materialise(manifest, rebuild=rebuild, variants=False)
        return Release(release_id, manifest, self.dirs.path(release_id))

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
        made = self._materialise(manifest)
        if self.cfg.store.fsync:
            sync_filesystem(self.layout.root)
        point_site(self.layout, release_id, fsync=self.cfg.store.fsync)
        bump_generation(self.layout)  # servers pick up loose objects and variants
        switched_id, names = self._switched
        if switched_id == release_id and names and made.variants:
            self.origins.add_variants(Release(release_id, manifest, self.dirs.path(release_id)),
                                      names)
        self.ledger.event(
            "materialized",
            f"árbol de archivos del corte {release_id} listo para nginx ({made.variants} "
            "variantes nuevas)", release_id=release_id,
            detail={"unpacked": made.unpacked, "variants": made.variants, "links": made.links},
        )
        self.dirs.prepare_spare(release_id)

    def _materialise(self, manifest: Manifest, *, rebuild: bool = False, variants: bool = True
                     ) -> Materialised:
        return materialise(manifest, layout=self.layout, objects=self.objects,
                           manifests=self.manifests, dirs=self.dirs, settings=self.cfg.store,
                           tree=site_release(self.layout), rebuild=rebuild, variants=variants)
