"""Publishing to every origin as one step: stage on all of them, then switch all of them.

Staging runs on every origin at once (one thread each). Then every origin that staged switches,
each in its own thread released by one barrier, so the switches start together; the local
activation is one of them. An origin that fails is retried (``retries``, doubling ``backoff``),
then taken out of rotation (ledger ``origin_out``) while the others go on; at the next publication
it is tried again, once, and when it stages and switches it is back (``origin_back``). Every phase
on every origin is timed in the ledger (``origin_staged``, ``origin_switched``) and so is the
switch window, from the first switch starting to the last one done (``switch_window``).

Crash safety: a journal (``store/origins-switch.json``) is written before staging and rewritten
before switching. If the run dies, the next one (``Publisher.recover``) finds it and brings every
origin that may have moved back in line with the local ``current``, which is always one whole
corte: origins that may have switched are switched to it; a bucket whose objects were being
replaced is staged with it again. Each origin is always on a whole corte of its own (its switch
is atomic); recovery makes them agree.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from difusor.errors import DifusorError
from difusor.ledger import Ledger
from difusor.paths import fsync_dir
from difusor.publish.origins.base import Context, Origin, Release, Result
from difusor.store.objects import write_file

JOURNAL = "origins-switch.json"


@dataclass
class Staged:
    release: Release
    previous: str | None
    participants: list[Origin]
    results: list[Result]
    was_out: set[str]


@dataclass
class SwitchReport:
    release_id: str
    results: list[Result] = field(default_factory=list)
    window: tuple[float, float] | None = None  # wall clock: first switch start, last end
    generation: int = 0
    out: list[str] = field(default_factory=list)

    @property
    def window_ms(self) -> float | None:
        return round((self.window[1] - self.window[0]) * 1000, 1) if self.window else None

    def states(self) -> dict[str, str]:
        state = {r.origin: "en línea" for r in self.results if r.ok}
        state.update({name: "fuera de rotación" for name in self.out})
        return state


class OriginSet:
    """Every configured origin, the local one first; see the module docstring."""

    def __init__(self, ctx: Context, ledger: Ledger, origins: list[Origin],
                 release: Callable[[str], Release]) -> None:
        self.ctx = ctx
        self.ledger = ledger
        self.origins = origins
        self.release = release  # a stored corte, materialised, ready to stage again

    @property
    def journal(self) -> Path:
        return self.ctx.layout.root / JOURNAL

    def close(self) -> None:
        for origin in self.origins:
            origin.close()

    # -- staging --------------------------------------------------------------------------

    def stage(self, release: Release, previous: str | None, *, package_id: int | None = None
              ) -> Staged:
        was_out = self.ledger.origins_out()
        self._write_journal("stage", release.id, previous, self.origins)
        results = _parallel(self.origins, lambda o: o.stage(
            release, retries=0 if o.name in was_out else None))
        participants = []
        for origin, result in zip(self.origins, results, strict=True):
            if result.ok:
                participants.append(origin)
                self.ledger.event(
                    "origin_staged", f"origen {origin.name}: corte {release.id} preparado en "
                    f"{result.ms:.0f} ms", package_id=package_id, release_id=release.id,
                    detail=_detail(result))
            else:
                self._out(origin, result, release.id, package_id, was_out)
                self._restore(origin, previous)
        return Staged(release, previous, participants, results, was_out)

    # -- switching ------------------------------------------------------------------------

    def switch(self, staged: Staged, *, cause: str = "publish", package_id: int | None = None
               ) -> SwitchReport:
        release_id = staged.release.id
        report = SwitchReport(release_id)
        report.out = [r.origin for r in staged.results if not r.ok]
        self._write_journal("switch", release_id, staged.previous, staged.participants)
        results = self._switch_together(staged.participants, release_id)
        report.results = results
        local = next((r for r in results if r.kind == "local"), None)
        if local is not None and not local.ok:
            # The local corte did not move: origins that did go back to it (the journal says
            # which may have), as after an interruption.
            self.recover(staged.previous)
            assert local.exception is not None
            raise local.exception
        for origin, result in zip(staged.participants, results, strict=True):
            if result.ok:
                self._switched(origin, result, release_id, cause, package_id, staged.was_out)
            else:
                report.out.append(origin.name)
                self._out(origin, result, release_id, package_id, staged.was_out)
                self._restore(origin, staged.previous)
        ok = [r for r in results if r.ok]
        if ok:
            report.window = (min(r.started for r in ok), max(r.ended for r in ok))
            self.ledger.event(
                "switch_window", f"corte {release_id} en {len(ok)} orígenes en "
                f"{report.window_ms:.0f} ms", package_id=package_id, release_id=release_id,
                detail={"ms": report.window_ms, "cause": cause,
                        "origins": {r.origin: r.ms for r in ok}, "out": report.out})
        if local is not None:
            report.generation = int(local.detail.get("generation", 0))
        self._clear_journal()
        return report

    def _switch_together(self, origins: list[Origin], release_id: str) -> list[Result]:
        barrier = threading.Barrier(len(origins)) if origins else None

        def go(origin: Origin) -> Result:
            assert barrier is not None
            barrier.wait()  # every thread is ready: the switches start at the same moment
            return origin.switch(release_id)

        return _parallel(origins, go)

    # -- after the switch ---------------------------------------------------------------

    def add_variants(self, release: Release, names: set[str]) -> None:
        """The variants made after the switch, to the origins (``names``) that switched."""
        for origin in self.origins:
            if origin.name not in names or origin.kind == "local":
                continue
            started = time.time()
            try:
                detail = origin.add_variants(release)
            except Exception as exc:  # the corte is served whole without them: noted, not out
                error = exc.message if isinstance(exc, DifusorError) else f"{exc}"
                self.ledger.event(
                    "origin_variants", f"origen {origin.name}: sin variantes comprimidas del "
                    f"corte {release.id}: {error}", release_id=release.id,
                    detail={"origin": origin.name, "kind": origin.kind, "error": error})
                continue
            self.ledger.event(
                "origin_variants", f"origen {origin.name}: variantes comprimidas del corte "
                f"{release.id} añadidas", release_id=release.id,
                detail={"origin": origin.name, "kind": origin.kind,
                        "ms": round((time.time() - started) * 1000, 1), **detail})

    # -- collection -----------------------------------------------------------------------

    def prune(self, keep: set[str]) -> dict[str, int | str]:
        """Each origin's staged releases beyond ``keep`` removed: name → how many, or why not."""
        done: dict[str, int | str] = {}
        for origin in self.origins:
            if origin.kind == "local":
                continue
            try:
                done[origin.name] = origin.prune(keep)
            except Exception as exc:  # one unreachable origin does not stop the collection
                done[origin.name] = str(exc)
        return done

    # -- after an interruption --------------------------------------------------------------

    def pending(self) -> bool:
        return self.journal.exists()

    def recover(self, live: str | None) -> None:
        """Bring the origins a killed run may have moved back to ``live`` (the local corte)."""
        try:
            doc = json.loads(self.journal.read_bytes())
        except (OSError, ValueError):
            doc = {}
        names = set(doc.get("participants", []))
        phase = doc.get("phase", "switch")
        affected = [o for o in self.origins if o.name in names and o.kind != "local"
                    and (phase == "switch" or o.stages_in_place)]
        if live is not None and affected:
            was_out = self.ledger.origins_out()
            release = self.release(live)

            def repair(origin: Origin) -> Result:
                staged = origin.stage(release)
                return origin.switch(live) if staged.ok else staged

            for origin, result in zip(affected, _parallel(affected, repair), strict=True):
                if result.ok:
                    self._switched(origin, result, live, "recovery", None, was_out)
                else:
                    self._out(origin, result, live, None, was_out)
        self._clear_journal()

    def _restore(self, origin: Origin, previous: str | None) -> None:
        """A bucket that failed half-way holds objects of two cortes: put the previous one back
        whole, if it can still be reached (one attempt; otherwise the next publication or the
        journal's recovery does it)."""
        if not origin.stages_in_place or previous is None:
            return
        staged = origin.stage(self.release(previous), retries=0)
        result = origin.switch(previous, retries=0) if staged.ok else staged
        self.ledger.event(
            "origin_restored" if result.ok else "origin_out",
            f"origen {origin.name}: " + (f"de vuelta entero en el corte {previous}" if result.ok
                                         else f"no pude devolverlo al corte {previous}: "
                                         f"{result.error}"),
            release_id=previous, detail={**_detail(result), "cause": "restore"})

    # -- the record -------------------------------------------------------------------------

    def _switched(self, origin: Origin, result: Result, release_id: str, cause: str,
                  package_id: int | None, was_out: set[str]) -> None:
        self.ledger.event(
            "origin_switched", f"origen {origin.name}: corte {release_id} en línea "
            f"({result.ms:.0f} ms)", package_id=package_id, release_id=release_id,
            detail={**_detail(result), "cause": cause, "start": _iso(result.started),
                    "end": _iso(result.ended)})
        if origin.name in was_out:
            was_out.discard(origin.name)
            self.ledger.event(
                "origin_back", f"origen {origin.name}: de vuelta en rotación con el corte "
                f"{release_id}", package_id=package_id, release_id=release_id,
                detail={"origin": origin.name, "kind": origin.kind})

    def _out(self, origin: Origin, result: Result, release_id: str, package_id: int | None,
             was_out: set[str]) -> None:
        again = origin.name in was_out
        was_out.add(origin.name)
        self.ledger.event(
            "origin_out", f"origen {origin.name} {'sigue' if again else 'queda'} fuera de "
            f"rotación ({'preparar' if result.phase == 'stage' else 'cambiar'} el corte "
            f"{release_id} falló {result.attempts} veces): {result.error}",
            package_id=package_id, release_id=release_id,
            detail={**_detail(result), "error": result.error, "again": again})

    # -- the journal ------------------------------------------------------------------------

    def _write_journal(self, phase: str, release_id: str, previous: str | None,
                       participants: list[Origin]) -> None:
        doc = {"phase": phase, "release": release_id, "previous": previous,
               "participants": [o.name for o in participants], "at": _iso(None)}
        root = self.ctx.layout.root
        tmp = root / f".{JOURNAL}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        write_file(tmp, json.dumps(doc).encode(), 0o644, sync=self.ctx.cfg.store.fsync)
        os.replace(tmp, self.journal)
        if self.ctx.cfg.store.fsync:
            fsync_dir(root)

    def _clear_journal(self) -> None:
        try:
            os.unlink(self.journal)
        except FileNotFoundError:
            return
        if self.ctx.cfg.store.fsync:
            fsync_dir(self.ctx.layout.root)


def _parallel(origins: list[Origin], call: Any) -> list[Result]:
    if not origins:
        return []
    with ThreadPoolExecutor(len(origins), thread_name_prefix="difusor-origin") as pool:
        return list(pool.map(call, origins))


def _detail(result: Result) -> dict[str, Any]:
    extra = {k: v for k, v in result.detail.items() if k != "generation"}
    return {"origin": result.origin, "kind": result.kind, "phase": result.phase, "ms": result.ms,
            "attempts": result.attempts, **extra}


def _iso(ts: float | None) -> str:
    when = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return when.isoformat(timespec="microseconds")
