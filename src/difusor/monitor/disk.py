"""The disks the difusor writes to, measured: free space and inodes per volume, against
``[monitor] disk_*`` (the convocatoria asks for at least 20 GB free, II.1.c).

A *volume* is one filesystem (one ``st_dev``): the state folder, its store, logs and quarantine,
the nginx access log's folder and, with ``[sites]``/``[feeds]``, each one's state are usually
all on one, but any of them may be a mount of its own. A folder that does not exist yet is
measured at its nearest existing parent: that is where it will be created. Sizes are GiB/MiB
(``2**30``, what ``df -h`` calls G): 20 of them are a little more than the convocatoria's 20 GB.

``difusor check`` and the monitor (``service.py``) share this; the monitor keeps one «disco casi
lleno» incident per volume, its suggested cause built by :func:`disk_cause` (with what
``difusor gc`` would free, :func:`gc_estimate`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from difusor.config import Config, MonitorSettings
from difusor.config.sites import feed_config
from difusor.paths import StateLayout
from difusor.store.layout import StoreLayout
from difusor.store.manifest import ManifestStore

Level = Literal["ok", "warning", "critical"]
GIB = 2**30
GC_KEEPS = (20, 5)  # ``difusor gc``'s default, and a deeper cut for a disk in trouble


@dataclass(frozen=True)
class Volume:
    device: int  # st_dev: folders on the same filesystem are one volume
    folders: tuple[str, ...]  # the difusor's folders on it (absolute paths)
    total: int  # bytes
    free: int  # bytes an unprivileged writer gets (f_bavail, not f_bfree)
    inodes_total: int  # 0: the filesystem does not count inodes (btrfs…)
    inodes_free: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free / self.total if self.total else 0.0

    @property
    def inodes_free_percent(self) -> float:
        return 100.0 * self.inodes_free / self.inodes_total if self.inodes_total else 100.0


def folders(cfg: Config) -> list[Path]:
    """Every folder the difusor writes to, absolute, in a stable order, without repeats."""
    views = [cfg]
    views += [cfg.for_site(name) for name in cfg.sites]
    views += [feed_config(cfg, name) for name in cfg.feeds]
    found: dict[Path, None] = {}
    for view in views:
        state = StateLayout(view.state_dir.absolute())
        for folder in (state.root, state.store, state.logs, state.quarantine, state.packages,
                       state.inbox, state.incoming, state.analytics,
                       view.nginx_access_log.parent):
            found.setdefault(Path(os.path.normpath(folder)), None)
    return list(found)


def existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent (where it will be created)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def mount_point(folder: Path) -> Path:
    """The root of the filesystem holding ``folder``."""
    here = existing(folder.absolute())
    device = here.stat().st_dev
    while here != here.parent and here.parent.stat().st_dev == device:
        here = here.parent
    return here


def volumes(cfg: Config) -> list[Volume]:
    """Every volume the difusor writes to (see :func:`folders`), one per ``st_dev``, in the order
    of their first folder. Raises OSError when a folder's filesystem cannot be read."""
    by_device: dict[int, list[Path]] = {}
    measured: dict[int, Path] = {}
    for folder in folders(cfg):
        where = existing(folder)
        device = where.stat().st_dev
        by_device.setdefault(device, []).append(folder)
        measured.setdefault(device, where)
    out = []
    for device, members in by_device.items():
        st = os.statvfs(measured[device])
        out.append(Volume(device, tuple(str(f) for f in members),
                          total=st.f_blocks * st.f_frsize, free=st.f_bavail * st.f_frsize,
                          inodes_total=st.f_files, inodes_free=st.f_favail))
    return out


def level(v: Volume, thresholds: MonitorSettings) -> tuple[Level, str]:
    """How ``v`` stands against ``[monitor] disk_*`` (0 = that threshold is off), and why in
    Spanish: every threshold crossed, the critical ones first."""
    t = thresholds
    critical, warning = [], []
    if t.disk_critical_gb and v.free < t.disk_critical_gb * GIB:
        critical.append(f"quedan {size(v.free)} libres, menos que el mínimo de "
                        f"{size(t.disk_critical_gb * GIB)} (convocatoria II.1.c)")
    elif t.disk_warn_gb and v.free < t.disk_warn_gb * GIB:
        warning.append(f"quedan {size(v.free)} libres, menos que el aviso de "
                       f"{size(t.disk_warn_gb * GIB)}")
    if t.disk_warn_percent and v.free_percent < t.disk_warn_percent:
        warning.append(f"queda {v.free_percent:.1f} % del volumen libre, menos que el aviso "
                       f"de {t.disk_warn_percent:g} %")
    if v.inodes_total:
        inodes = f"quedan {v.inodes_free:,} inodos libres ({v.inodes_free_percent:.1f} %)"
        if t.disk_critical_inodes_percent and \
                v.inodes_free_percent < t.disk_critical_inodes_percent:
            critical.append(f"{inodes}, menos que el mínimo de "
                            f"{t.disk_critical_inodes_percent:g} %")
        elif t.disk_warn_inodes_percent and v.inodes_free_percent < t.disk_warn_inodes_percent:
            warning.append(f"{inodes}, menos que el aviso de {t.disk_warn_inodes_percent:g} %")
    if critical:
        return "critical", "; ".join(critical + warning)
    if warning:
        return "warning", "; ".join(warning)
    return "ok", f"espacio suficiente: {figures(v)}"


def name(v: Volume) -> str:
    """What the operator reads as the volume (an incident's target): its first folder, and how
    many of the difusor's folders it holds."""
    first = v.folders[0]
    return first if len(v.folders) == 1 else f"{first} ({len(v.folders)} carpetas)"


def size(n: float) -> str:
    if n >= GIB:
        return f"{n / GIB:.1f} GB"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n:.0f} bytes"


def folders_text(v: Volume) -> str:
    """The volume's folders, those inside the first one by their name there."""
    first, inside, apart = Path(v.folders[0]), [], []
    for folder in map(Path, v.folders[1:]):
        (inside if folder.is_relative_to(first) else apart).append(folder)
    text = str(first)
    if inside:
        text += f" (con {', '.join(str(f.relative_to(first)) for f in inside)})"
    return ", ".join([text, *map(str, apart)])


def figures(v: Volume) -> str:
    text = f"{size(v.free)} libres de {size(v.total)} ({v.free_percent:.1f} %)"
    if v.inodes_total:
        text += (f", {v.inodes_free:,} de {v.inodes_total:,} inodos libres "
                 f"({v.inodes_free_percent:.1f} %)")
    return text


def detail(v: Volume, lvl: Level) -> dict[str, Any]:
    """The figures an incident keeps (the latest round's)."""
    return {"level": lvl, "folders": list(v.folders), "free_bytes": v.free,
            "total_bytes": v.total, "free_percent": round(v.free_percent, 2),
            "inodes_free": v.inodes_free, "inodes_total": v.inodes_total,
            "inodes_free_percent": round(v.inodes_free_percent, 2)}


# -- what ``difusor gc`` would free ---------------------------------------------------------


@dataclass(frozen=True)
class GcEstimate:
    store: Path
    site: str  # "" = the file's only site; else ``--site NAME``
    releases: int  # cortes in the store
    freeable: dict[int, int] = field(default_factory=dict)  # --keep N → bytes, about


def stores(cfg: Config) -> list[tuple[str, Path]]:
    """(site, store folder) for every site (``""`` without ``[sites]``)."""
    if not cfg.sites:
        return [("", StateLayout(cfg.state_dir.absolute()).store)]
    return [(n, StateLayout(cfg.for_site(n).state_dir.absolute()).store) for n in cfg.sites]


def gc_estimate(store: Path, keeps: Sequence[int] = GC_KEEPS, site: str = "") -> GcEstimate:
    """What ``difusor gc --keep N`` would free in ``store`` for each N, as ``store/gc.py``
    decides it (the newest N cortes, the live one and nginx's tree stay; loose objects no kept
    corte references go) but without the lock and in one pass over the objects. Publication
    order is the manifests' mtimes (written once, at publication), so no ledger is needed."""
    layout = StoreLayout(store)
    dated: dict[str, float] = {}
    for folder, suffix in ((layout.manifests, ".json"), (layout.releases, "")):
        for entry in _scan(folder):
            if entry.name.startswith(".") or not entry.name.endswith(suffix):
                continue
            rid = entry.name.removesuffix(suffix) if suffix else entry.name
            dated.setdefault(rid, entry.stat().st_mtime)
    ids = sorted(dated, key=lambda r: dated[r])
    wanted = sorted({k for k in keeps if 1 <= k < len(ids)}, reverse=True)
    if not wanted:
        return GcEstimate(store, site, len(ids))
    always = {r for r in (_pointed(layout.current), _pointed(layout.site)) if r}
    manifests = ManifestStore(layout.manifests, fsync=False)
    shas: dict[str, set[str]] = {}
    for rid in set(ids[-wanted[0]:]) | always:
        try:
            shas[rid] = {e.sha256 for e in manifests.load(rid).files.values()}
        except (OSError, ValueError):
            shas[rid] = set()
    refs = {k: set().union(*(shas[r] for r in set(ids[-k:]) | always)) for k in wanted}
    fewest = refs[wanted[-1]]  # the smallest keep references least: anything it keeps, all do
    freeable = dict.fromkeys(wanted, 0)
    for prefix in _scan(layout.objects):
        if len(prefix.name) != 2 or not prefix.is_dir():
            continue
        for entry in _scan(Path(prefix.path)):
            sha = prefix.name + entry.name.split(".", 1)[0]
            if sha in fewest:
                continue
            try:
                bytes_ = entry.stat().st_size
            except FileNotFoundError:
                continue
            for k in wanted:
                if sha not in refs[k]:
                    freeable[k] += bytes_
    return GcEstimate(store, site, len(ids), freeable)


def _pointed(link: Path) -> str | None:
    """The release a store symlink names (``publish/activate.py`` reads them the same way;
    read here so the monitor does not import the publisher)."""
    try:
        return os.readlink(link).rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")
    except OSError:
        return None


def _scan(folder: Path) -> Iterable[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            yield from it
    except FileNotFoundError:
        return


def gc_text(estimate: GcEstimate) -> str:
    where = f"el almacén de «{estimate.site}»" if estimate.site else "el almacén"
    count = f"{estimate.releases} corte{'' if estimate.releases == 1 else 's'}"
    if not estimate.freeable:
        return f"{where} guarda {count}: nada que depurar con «difusor gc»"
    flag = f" --site {estimate.site}" if estimate.site else ""
    options = " y ".join(f"«difusor gc --keep {k}{flag}» liberaría unos {size(b)}"
                         for k, b in sorted(estimate.freeable.items(), reverse=True))
    return f"{where} guarda {count}; {options}"


def disk_cause(v: Volume, reason: str, cfg: Config) -> str:
    """The suggested cause of a disk incident: what was crossed, the figures, and what
    ``difusor gc`` would free in each store on the volume."""
    parts = [f"{reason}. Volumen montado en {mount_point(Path(v.folders[0]))}: {figures(v)}; "
             f"carpetas: {folders_text(v)}"]
    for site, store in stores(cfg):
        if str(store) in v.folders:
            try:
                parts.append(gc_text(gc_estimate(store, site=site)))
            except OSError as exc:  # an estimate must never keep the incident from opening
                parts.append(f"no se pudo estimar qué liberaría «difusor gc» ({exc})")
    parts.append("un paquete que no quepa se rechaza no_space y se reintenta solo cuando hay "
                 "espacio")
    return ". ".join(p[:1].upper() + p[1:] for p in parts) + "."
