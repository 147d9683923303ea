"""Tidying up after an interrupted run, the next time a publication or rollback takes the lock.

A ``SIGKILL`` at any point leaves the previous corte (or the new one, complete) live; what it can
leave besides: temp folders and files, an activation the ledger never heard of, a two-phase
switch cut short (its journal), copies in ``incoming/``, and a live corte whose tree or spare
was never finished.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from difusor.ledger import ActivationRow, Ledger
from difusor.paths import StateLayout
from difusor.publish.activate import bump_generation, live_release, site_release
from difusor.publish.origins import JOURNAL, OriginSet
from difusor.receive.intake import recover_copy
from difusor.store.layout import StoreLayout


def recover(layout: StoreLayout, state: StateLayout, ledger: Ledger, *,
            origins: Callable[[], OriginSet], finish: Callable[[str], None],
            chained: Callable[[str, ActivationRow], None] = lambda _r, _a: None) -> None:
    """``origins`` loads the origins only when a switch was cut short; ``finish`` makes the live
    corte's tree and spare; ``chained`` appends a recovered activation to the public chain."""
    for folder in (layout.tmp, layout.build):
        for leftover in folder.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
    for leftover in [*layout.root.glob(".current.*"), *layout.root.glob(".site.*"),
                     *layout.root.glob(f".{JOURNAL}.*"),
                     *layout.manifests.glob(".*.tmp"), *layout.packs.glob(".*")]:
        leftover.unlink(missing_ok=True)
    live = live_release(layout)
    last = ledger.last_activation()
    if live and (last is None or last.release_id != live):
        row = ledger.release(live)
        activation = ledger.activated(
            live, last.release_id if last else None, "recovery",
            row.package_id if row else None,
            message=f"corte {live} en línea (activación recuperada tras una interrupción)",
        )
        chained(live, activation)
        bump_generation(layout)
    if (layout.root / JOURNAL).exists():  # a two-phase switch was cut short
        origins().recover(live)
    for leftover in sorted(state.incoming.iterdir()):
        recover_copy(leftover, ledger, packages=state.packages, quarantine=state.quarantine)
    if live and (site_release(layout) != live or not (layout.spare / live).is_dir()):
        finish(live)  # the spare is made last: without it, finishing was cut short
