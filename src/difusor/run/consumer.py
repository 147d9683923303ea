"""The publisher's side of the inbox: one package at a time, in arrival order.

Each package goes through exactly what ``difusor publish`` does. Its inbox entry is removed only
once the publisher is done with it (live, a no-op, refused or failed), so a package that was
waiting, or being published when the process died, is published on the next start. A package
refused for want of disk space stays in the inbox and is tried again once the free space has
grown (looked at every ``NO_SPACE_RETRY`` seconds), so a full disk is one refusal in the ledger,
not one every few seconds.

With ``[sites]`` the consumer serves one feed (``""``: the file's own receivers) and each package
goes to the site the operation's phase names (``sites.catalog.route``): the test site during a
simulacro, the official one from the start of publication. A package no site may take (the
operation is closed) is kept in the feed's quarantine with the reason, never dropped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from difusor.config import Config
from difusor.errors import BusyError, DifusorError, PackageRefused
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.publish.outcome import PublishOutcome
from difusor.publish.publisher import Publisher
from difusor.receive.inbox import Arrival, arrivals, sidecar_for
from difusor.receive.intake import REASON_SUFFIX, SIDECAR_SUFFIX, Intake, hash_file
from difusor.sites import phase as phases
from difusor.sites.catalog import route
from difusor.store.space import NO_SPACE, free_bytes

Log = Callable[[str], None]
NO_SPACE_RETRY = 2.0  # seconds between two looks at the free space (a look is one statvfs)


class InboxConsumer:
    def __init__(self, cfg: Config, ledger: Ledger, *, feed: str = "", log: Log | None = None,
                 on_outcome: Callable[[Arrival, PublishOutcome | None], None] | None = None) -> None:
        from difusor.config.sites import feed_config

        self.root = cfg  # the whole file: its sites and calendar decide where a package goes
        self.feed = feed
        self.cfg = feed_config(cfg, feed)
        self.ledger = ledger  # the difusor's own ledger (the phase the operator set is there)
        self.state = StateLayout(self.cfg.state_dir)
        self.log = log or (lambda _m: None)
        self._publishers: dict[str, Publisher] = {}
        self.on_outcome = on_outcome
        self._wake = threading.Event()
        self.no_space_retry = NO_SPACE_RETRY
        self._retry_at = 0.0  # while the disk is full, nothing is tried before this
        self._free_when_full: int | None = None  # free bytes when the disk was found full
        # The authority that has sent sidecars before will send them again: wait for a late one.
        self._sidecars_seen = cfg.package.require_checksum == "sidecar" or any(
            p.name.endswith(SIDECAR_SUFFIX) for p in _listing(self.state.packages)
        )

    def publisher(self, site: str = "") -> Publisher:
        """The publisher of ``site`` ("" = the file itself), made on first use."""
        p = self._publishers.get(site)
        if p is None:
            cfg = self.root.for_site(site) if site else self.cfg
            ledger = self.ledger if not site else Ledger(StateLayout(cfg.state_dir).ledger)
            p = self._publishers[site] = Publisher(cfg, ledger)
            # Beside a manual `difusor publish`: retry soon rather than block, so a stop stays prompt.
            p.lock_timeout = 1.0
            p.log = self.log
        return p

    def close(self) -> None:
        for site, p in self._publishers.items():
            p.close()
            if site:
                p.ledger.close()
        self._publishers.clear()

    def notify(self, _path: Path | None = None) -> None:
        """A receiver delivered something: look now instead of at the next poll."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.drain(stop)
            self._wake.wait(0.5)
            self._wake.clear()

    def drain(self, stop: threading.Event | None = None) -> int:
        """Publish every package waiting in the inbox; returns how many were taken."""
        taken = 0
        while not (stop and stop.is_set()) and self._room():
            pending = arrivals(self.state.inbox)
            packages = [a for a in pending if not a.is_sidecar]
            if not packages:
                self._orphans(pending)
                return taken
            package = packages[0]
            sidecar = sidecar_for(package, pending) or self._await_sidecar(package, stop)
            if not self._take(package, sidecar):
                return taken  # the publisher is busy (a manual publish): try again shortly
            taken += 1
        return taken

    def _room(self) -> bool:
        """False while the disk is full: until the next look, and until free space has grown."""
        if time.monotonic() < self._retry_at:
            return False
        if self._free_when_full is not None and self._free() <= self._free_when_full:
            self._retry_at = time.monotonic() + self.no_space_retry
            return False
        self._free_when_full = None
        return True

    def _free(self) -> int:
        try:
            return free_bytes(self.state.root)
        except OSError:
            return 0

    def _await_sidecar(self, package: Arrival, stop: threading.Event | None) -> Arrival | None:
        if not self._sidecars_seen:
            return None
        deadline = time.monotonic() + max(0.0, self.cfg.receive.sidecar_wait - package.age)
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            self._wake.wait(0.05)
            self._wake.clear()
            found = sidecar_for(package, arrivals(self.state.inbox))
            if found:
                return found
        return None

    def _take(self, package: Arrival, sidecar: Arrival | None) -> bool:
        if sidecar is not None:
            self._sidecars_seen = True
        now = datetime.now(UTC)
        site, why = route(self.root, self.feed, phases.current(self.root, self.ledger, now).name)
        if site is None:
            self._refuse(package, sidecar, why)
            return True
        outcome: PublishOutcome | None = None
        shown = f"{package.name} (sitio {site})" if site else package.name
        try:
            outcome = self.publisher(site).publish(
                package.path, name=package.name, link=True,
                sidecar=sidecar.path if sidecar else None,
                on_live=lambda o: self.log(f"{shown}: {o.message} "
                                           f"({package.age * 1000:.0f} ms desde la llegada)"),
            )
            if outcome.status != "published":
                self.log(f"{shown}: {outcome.message}")
        except BusyError:
            return False
        except PackageRefused as refusal:
            if refusal.code == NO_SPACE:  # kept in the inbox: tried again when there is room
                self.log(f"{shown}: {refusal.message}; siguiente intento en "
                         f"{self.no_space_retry:.0f} s")
                self._retry_at = time.monotonic() + self.no_space_retry
                self._free_when_full = self._free()
                return False
            where = StateLayout(self.publisher(site).cfg.state_dir).quarantine
            self.log(f"{shown}: paquete rechazado — {refusal.message} "
                     f"(original en {where})")
        except DifusorError as exc:
            self.log(f"{shown}: no se pudo publicar — {exc.message}")
        except Exception as exc:  # kept in quarantine by the publisher; the loop goes on
            self.log(f"{shown}: falla inesperada al publicar — {exc!r}")
            self.ledger.event("publish_error", f"falla inesperada al publicar {shown}: {exc!r}")
        for done in (package, sidecar):
            if done is not None:
                done.path.unlink(missing_ok=True)
        if self.on_outcome:
            self.on_outcome(package, outcome)
        return True

    def _refuse(self, package: Arrival, sidecar: Arrival | None, why: str) -> None:
        """No site takes packages now: the original goes to the feed's quarantine with why
        (the same reason file as any refused package: ``Intake.quarantine``)."""
        sha, size = hash_file(package.path)
        if sidecar is not None:  # its inbox name is not the package's: moved by hand
            self.state.quarantine.mkdir(parents=True, exist_ok=True)
            os.replace(sidecar.path, self.state.quarantine / sidecar.path.name)
        target = Intake(package.path, package.name, sha, size, None).quarantine(
            self.state.quarantine, "no_site", why)
        self.ledger.event("refused", f"{package.name}: {why}",
                          detail={"code": "no_site", "sha256": sha, "name": package.name})
        self.log(f"{package.name}: paquete rechazado — {why} (original en {target})")
        if self.on_outcome:
            self.on_outcome(package, None)

    def _orphans(self, pending: list[Arrival]) -> None:
        """A sidecar with no package, older than the wait: its package went without it, or never
        came. Kept in quarantine with the reason, not silently dropped."""
        limit = max(self.cfg.receive.sidecar_wait * 4, 60.0)
        for side in pending:
            if side.is_sidecar and side.age > limit:
                target = self.state.quarantine / side.path.name
                self.state.quarantine.mkdir(parents=True, exist_ok=True)
                os.replace(side.path, target)
                target.with_name(target.name + REASON_SUFFIX).write_text(
                    f"Suma de verificación sin paquete: {side.name}\n"
                    f"Llegó sin su paquete, o después de que el paquete se publicó sin ella.\n",
                    encoding="utf-8")
                self.log(f"{side.name}: suma sin paquete; guardada en cuarentena")


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []
