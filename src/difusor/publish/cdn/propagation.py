"""After a corte goes live: purge every configured CDN, then prove the edge serves the new bytes.

``after_publish`` is what the publisher calls once a corte is live (``after_activation`` finds
the two manifests itself, for a publication or a rollback); ``manual_purge`` is what
``difusor purge`` calls. Both purge every ``[[cdn]]`` first (in the order configured: list a CDN
that sits in front of another after it), then fetch through each ``edge_url``. Every step is a
ledger event:

    purge          a CDN accepted the purge (URLs, provider, requests, retries, ms)
    purge_failed   it did not, or could not be set up (the Spanish reason)
    edge_verified  the edge served the new bytes (ms since the purge, and since activation)
    edge_stale     it still served old bytes when ``verify_timeout`` ran out

Nothing here raises for a CDN's failure: the corte is already live, and the report says what
the edge did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from difusor.config import CdnSettings, Config
from difusor.errors import DifusorError, NotFound
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.publish.activate import live_release
from difusor.publish.cdn.base import Purger, PurgeResult, purger_for
from difusor.publish.cdn.edge import EdgeReport, verify_edge
from difusor.publish.cdn.plan import expected_at_edge, public_url, purge_paths
from difusor.store.layout import StoreLayout
from difusor.store.manifest import Manifest, ManifestStore

Log = Callable[[str], None]


@dataclass
class CdnOutcome:
    cdn: str
    kind: str
    purge: PurgeResult | None = None
    edge: EdgeReport | None = None
    error: str = ""  # the CDN could not be set up (configuration, credentials)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.error and self.purge is not None and self.purge.ok
                and (self.edge is None or self.edge.ok))


@dataclass
class CdnReport:
    release_id: str | None
    paths: list[str]  # URL paths purged ("/json/main.json"); empty with everything=True
    cdns: list[CdnOutcome]
    everything: bool = False

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cdns)

    def lines(self) -> list[str]:
        """One Spanish line per step, for the operator."""
        out: list[str] = []
        for c in self.cdns:
            out.extend(c.warnings)
            if c.error:
                out.append(f"CDN «{c.cdn}» ({c.kind}): {c.error}")
            if c.purge is not None:
                out.append(c.purge.message)
            if c.edge is not None:
                out.append(_edge_line(c, c.edge))
        return out


def after_publish(cfg: Config, ledger: Ledger, previous: Manifest | None, current: Manifest,
                  *, log: Log | None = None) -> CdnReport:
    """Purge what changed from ``previous`` to ``current`` (now live) on every ``[[cdn]]``, then
    fetch it through each ``edge_url`` until the new bytes are served. Call it after activation,
    outside the publish lock if you can: it takes as long as the CDNs do (a few hundred ms for
    Varnish; seconds for an API with many URLs; up to ``verify_timeout`` when an edge is stale).
    """
    return _changes(cfg, ledger, previous, current, log, cause="publish")


def after_activation(cfg: Config, ledger: Ledger, release_id: str, *, log: Log | None = None
                     ) -> CdnReport:
    """``after_publish`` for a release that was just activated (a publication or a rollback),
    with both manifests found from the ledger's last activation and the store."""
    if not cfg.cdn:
        return CdnReport(release_id, [], [])
    store = _manifests(cfg)
    last = ledger.last_activation()
    before = last.previous_id if last and last.release_id == release_id else None
    previous = store.load(before) if before and store.exists(before) else None
    return after_publish(cfg, ledger, previous, store.load(release_id), log=log)


def manual_purge(cfg: Config, ledger: Ledger, paths: Sequence[str] = (), *,
                 everything: bool = False, log: Log | None = None) -> CdnReport:
    """``difusor purge``: the given site paths (or URLs), everything (``everything``), or, with
    neither, what the live corte changed since the one before it (the automatic purge, again)."""
    live, previous = _live_manifests(cfg, ledger)
    main = cfg.package.main_json
    if everything:
        return _propagate(cfg, ledger, [], live.release_id if live else None, log,
                          cause="manual", everything=True,
                          expected=lambda s: expected_at_edge([], None, live, main, 0) if live
                          else {})
    if paths:
        wanted = list(dict.fromkeys(_site_path(p) for p in paths))
        return _propagate(cfg, ledger, wanted, live.release_id if live else None, log,
                          cause="manual",
                          expected=lambda s: _expected_for(wanted, live, main, s.verify_sample))
    if live is None:
        raise NotFound("todavía no hay un corte publicado: indica rutas o usa --all")
    return _changes(cfg, ledger, previous, live, log, cause="manual")


# -- the work ---------------------------------------------------------------------------------

def _changes(cfg: Config, ledger: Ledger, previous: Manifest | None, current: Manifest,
             log: Log | None, *, cause: str) -> CdnReport:
    if not cfg.cdn:
        return CdnReport(current.release_id, [], [])
    paths = purge_paths(previous, current, cfg.package.main_json)
    return _propagate(cfg, ledger, paths, current.release_id, log, cause=cause,
                      expected=lambda s: expected_at_edge(paths, previous, current,
                                                          cfg.package.main_json, s.verify_sample))


def _propagate(cfg: Config, ledger: Ledger, paths: list[str], release_id: str | None,
               log: Log | None, *, cause: str, expected: Callable[[CdnSettings],
               dict[str, str | None]], everything: bool = False) -> CdnReport:
    say = log or (lambda _m: None)
    urls = [public_url(cfg.site.url, p) for p in paths]
    report = CdnReport(release_id, paths, [], everything)
    ready: list[tuple[CdnSettings, CdnOutcome]] = []
    for settings in cfg.cdn:  # purge them all first: an outer CDN refetches from an inner one
        outcome = CdnOutcome(settings.label, settings.kind)
        report.cdns.append(outcome)
        _purge_one(cfg, ledger, settings, outcome, urls, release_id, cause, everything)
        for line in [*outcome.warnings, outcome.error or (outcome.purge.message
                                                          if outcome.purge else "")]:
            if line:
                say(line)
        if outcome.purge is not None and outcome.purge.ok:
            ready.append((settings, outcome))
    for settings, outcome in ready:
        if not settings.edge_url or settings.verify_timeout <= 0:
            continue
        wanted = expected(settings)
        if not wanted:
            continue
        try:
            outcome.edge = verify_edge(settings.edge_url, wanted, timeout=settings.verify_timeout)
        except Exception as exc:  # a bug or an odd edge must not undo a live publication
            outcome.error = f"no se pudo comprobar el borde: {exc!r}"
            say(f"CDN «{outcome.cdn}» ({outcome.kind}): {outcome.error}")
            continue
        _record_edge(ledger, outcome, outcome.edge, release_id)
        say(_edge_line(outcome, outcome.edge))
    return report


def _purge_one(cfg: Config, ledger: Ledger, settings: CdnSettings, outcome: CdnOutcome,
               urls: list[str], release_id: str | None, cause: str, everything: bool) -> None:
    purger: Purger | None = None
    try:
        purger = purger_for(cfg, settings)
        outcome.warnings = list(purger.warnings)
        outcome.purge = purger.purge_all() if everything else purger.purge(urls)
    except DifusorError as exc:
        outcome.error = exc.message
    except Exception as exc:  # an SDK's surprise: recorded, and the other CDNs still go
        outcome.error = f"falla inesperada: {exc!r}"
    finally:
        if purger is not None:
            purger.close()
    if outcome.purge is not None:
        detail = {**outcome.purge.detail(), "cause": cause}
        kind = "purge" if outcome.purge.ok else "purge_failed"
        ledger.event(kind, outcome.purge.message, release_id=release_id, detail=detail)
    else:
        ledger.event(
            "purge_failed", f"CDN «{outcome.cdn}» ({outcome.kind}): {outcome.error}",
            release_id=release_id,
            detail={"cdn": outcome.cdn, "provider": outcome.kind, "urls": len(urls), "ms": 0.0,
                    "error": outcome.error, "cause": cause, "everything": everything},
        )


def _record_edge(ledger: Ledger, outcome: CdnOutcome, edge: EdgeReport,
                 release_id: str | None) -> None:
    detail: dict[str, object] = {"cdn": outcome.cdn, "provider": outcome.kind, **edge.detail()}
    since = _since_activation_ms(ledger, release_id)
    if since is not None:
        detail["since_activation_ms"] = since
    ledger.event("edge_verified" if edge.ok else "edge_stale", _edge_line(outcome, edge),
                 release_id=release_id, detail=detail)


def _edge_line(c: CdnOutcome, edge: EdgeReport) -> str:
    who = f"CDN «{c.cdn}» ({c.kind})"
    if edge.ok:
        return (f"{who}: el borde ya sirve los bytes nuevos ({edge.checked} URL comprobadas, "
                f"{edge.ms:.0f} ms después de purgar)")
    shown = ", ".join(edge.stale[:5]) + ("…" if len(edge.stale) > 5 else "")
    return (f"{who}: el borde seguía sirviendo bytes viejos tras {edge.ms / 1000:.1f} s en "
            f"{len(edge.stale)} de {edge.checked} URL ({shown})"
            + (f"; último error: {edge.last_error}" if edge.last_error else ""))


def _since_activation_ms(ledger: Ledger, release_id: str | None) -> float | None:
    last = ledger.last_activation()
    if release_id is None or last is None or last.release_id != release_id:
        return None
    at = datetime.fromisoformat(last.at)
    return round((datetime.now(UTC) - at).total_seconds() * 1000, 1)


# -- manual purges ------------------------------------------------------------------------------

def _site_path(value: str) -> str:
    """``json/main.json``, ``/json/main.json`` or ``https://site/json/main.json`` → the URL path."""
    if "://" in value:
        value = urlsplit(value).path or "/"
    return "/" + unquote(value).lstrip("/")


def _expected_for(paths: list[str], live: Manifest | None, main_json: str, sample: int
                  ) -> dict[str, str | None]:
    if live is None:
        return {}
    found = expected_at_edge(paths, None, live, main_json, max(sample, len(paths)))
    return {p: sha for p, sha in found.items() if p in paths}


def _manifests(cfg: Config) -> ManifestStore:
    return ManifestStore(StoreLayout(StateLayout(cfg.state_dir).store).manifests, fsync=False)


def _live_manifests(cfg: Config, ledger: Ledger) -> tuple[Manifest | None, Manifest | None]:
    """The live corte's manifest and the one live before it (None when unknown)."""
    live_id = live_release(StoreLayout(StateLayout(cfg.state_dir).store))
    if live_id is None:
        return None, None
    store = _manifests(cfg)
    live = store.load(live_id)
    last = ledger.last_activation()
    before = last.previous_id if last and last.release_id == live_id else None
    previous = store.load(before) if before and store.exists(before) else None
    return live, previous
