"""Incident times: stored as ISO 8601 UTC (the ledger's form), shown on the operator's clock."""

from __future__ import annotations

from datetime import datetime, tzinfo

from difusor.moments import stored


def seconds(start: str, end: str) -> float:
    return (stored(end) - stored(start)).total_seconds()


def local(stamp: str, zone: tzinfo | None = None) -> str:
    """``HH:MM:SS`` in the site's zone (the operator's clock), with the date when not today."""
    when = stored(stamp).astimezone(zone)
    today = datetime.now(zone).date()
    return when.strftime("%H:%M:%S" if when.date() == today else "%d/%m/%Y %H:%M:%S")
