"""What a healthy target serves right now: the live release, its ``main.json`` and a sample.

Built from the ledger's last activation and the live release's manifest (the store's ``current``
pointer), so a probe can tell "old corte" (stale) from "wrong bytes" (integrity). Sent as JSON to
remote probe agents, which have neither the ledger nor the store.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from difusor.config import Config
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.publish.activate import live_release
from difusor.store.layout import StoreLayout
from difusor.store.manifest import ManifestStore

# How many earlier releases' main.json digests are kept to recognise a stale corte.
OLDER = 50


@dataclass(frozen=True)
class Expected:
    release_id: str | None
    corte_time: str | None
    main_sha256: str | None
    files: dict[str, str]  # path -> sha256 (a rotating sample chosen by the prober)
    activated_at: str | None
    main_path: str = "json/main.json"
    # sha256 of main.json in earlier releases -> that release id: served bytes found here mean
    # the target serves an older corte (stale), not corrupted bytes (integrity).
    older_main: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, data: str | bytes | dict[str, Any]) -> Expected:
        doc = data if isinstance(data, dict) else json.loads(data)
        return cls(
            release_id=doc.get("release_id"),
            corte_time=doc.get("corte_time"),
            main_sha256=doc.get("main_sha256"),
            files={str(k): str(v) for k, v in (doc.get("files") or {}).items()},
            activated_at=doc.get("activated_at"),
            main_path=doc.get("main_path") or "json/main.json",
            older_main={str(k): str(v) for k, v in (doc.get("older_main") or {}).items()},
        )


def expected_state(cfg: Config, ledger: Ledger, *, sample: int, offset: int = 0) -> Expected:
    """The live release as the store has it; ``sample`` files of its manifest starting at
    ``offset`` (wrapping), so successive probes cover every file in turn."""
    main_path = cfg.package.main_json
    layout = StoreLayout(StateLayout(cfg.state_dir).store)
    manifests = ManifestStore(layout.manifests, fsync=False)
    last = ledger.last_activation()
    live = live_release(layout) or (last.release_id if last else None)
    if live is None or not manifests.exists(live):
        return Expected(None, None, None, {}, last.at if last else None, main_path)
    manifest = manifests.load(live)
    main = manifest.files.get(main_path)
    paths = sorted(p for p in manifest.files if p != main_path)
    chosen: dict[str, str] = {}
    if paths and sample > 0:
        start = offset % len(paths)
        for i in range(min(sample, len(paths))):
            path = paths[(start + i) % len(paths)]
            chosen[path] = manifest.files[path].sha256
    activated_at = last.at if last and last.release_id == live else _activated_at(ledger, live)
    return Expected(
        release_id=live,
        corte_time=manifest.corte_time,
        main_sha256=main.sha256 if main else None,
        files=chosen,
        activated_at=activated_at,
        main_path=main_path,
        older_main=_older_main(ledger, manifests, live, main_path,
                               main.sha256 if main else None),
    )


def _activated_at(ledger: Ledger, release_id: str) -> str | None:
    for act in ledger.activations(200):
        if act.release_id == release_id:
            return act.at
    return None


def _older_main(ledger: Ledger, manifests: ManifestStore, live: str, main_path: str,
                live_sha: str | None) -> dict[str, str]:
    older: dict[str, str] = {}
    seen: set[str] = {live}
    for act in ledger.activations(OLDER * 2):
        for rid in (act.release_id, act.previous_id):
            if not rid or rid in seen or len(seen) > OLDER:
                continue
            seen.add(rid)
            sha = _main_sha(manifests, rid, main_path)
            if sha is not None and sha != live_sha:
                older.setdefault(sha, rid)
    return older


# Manifests never change once written: (manifest file, main path) -> main.json's sha256.
_MAIN_SHA: dict[tuple[str, str], str | None] = {}


def _main_sha(manifests: ManifestStore, release_id: str, main_path: str) -> str | None:
    key = (str(manifests.path(release_id)), main_path)
    if key not in _MAIN_SHA:
        try:
            entry = manifests.load(release_id).files.get(main_path)
        except (OSError, ValueError, KeyError):
            return None  # collected, or never stored here: try again next time
        if len(_MAIN_SHA) > 4 * OLDER:
            _MAIN_SHA.clear()
        _MAIN_SHA[key] = entry.sha256 if entry else None
    return _MAIN_SHA[key]
