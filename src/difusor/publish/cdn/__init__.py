"""CDN purge and proof at the edge (``[[cdn]]``): Varnish, Cloudflare, Fastly, CloudFront, Akamai.

    after_publish(cfg, ledger, previous, current, *, log=None) -> CdnReport
        what the publisher calls once a corte is live (see ``propagation``)
    after_activation(cfg, ledger, release_id, *, log=None) -> CdnReport
        the same, finding both manifests from the ledger and the store (publication or rollback)
    manual_purge(cfg, ledger, paths=(), *, everything=False, log=None) -> CdnReport
        ``difusor purge``
    purgers(cfg) -> list[Purger]
        one purger per ``[[cdn]]``: ``purge(urls) -> PurgeResult``, ``purge_all() -> PurgeResult``

Vendor SDKs load only when their driver is configured (``base.DRIVERS``).
"""

from difusor.publish.cdn.base import (
    DRIVERS,
    PurgeError,
    Purger,
    PurgeResult,
    purger_for,
    purgers,
)
from difusor.publish.cdn.edge import EdgeReport, verify_edge
from difusor.publish.cdn.plan import expected_at_edge, public_url, purge_paths
from difusor.publish.cdn.propagation import (
    CdnOutcome,
    CdnReport,
    after_activation,
    after_publish,
    manual_purge,
)

__all__ = [
    "DRIVERS",
    "CdnOutcome",
    "CdnReport",
    "EdgeReport",
    "PurgeError",
    "PurgeResult",
    "Purger",
    "after_activation",
    "after_publish",
    "expected_at_edge",
    "manual_purge",
    "public_url",
    "purge_paths",
    "purger_for",
    "purgers",
    "verify_edge",
]
