"""Incidents: opened from probe results and ledger events, with every field the memoria asks.

Probes open incidents of a kind (outage, stale, integrity, header, tls, degraded) after a streak
of failures (``streaks``, ``tracker``). The ledger opens the others (``ledgerevents``): a refused
package, an origin out, a failed purge, an attack; the monitor adds the authority's delay and a
full disk (``tracker``). Each incident carries a suggested root cause from the evidence
(``causes``; the operator's ``cause`` wins and moves it to *identified*), its impact from the
embedded server's access log (``impact``) and the automatic measures the ledger shows in the
window (``measures``); an operator's measures are kept as they are.
"""

from difusor.monitor.incidents.causes import authority_cause, suggest_cause
from difusor.monitor.incidents.impact import impact, impact_text
from difusor.monitor.incidents.kinds import KINDS, SEVERITIES, STATES
from difusor.monitor.incidents.measures import automatic_measures
from difusor.monitor.incidents.tracker import IncidentTracker, Notify, set_cause

__all__ = ["KINDS", "SEVERITIES", "STATES", "IncidentTracker", "Notify",
           "authority_cause", "automatic_measures", "impact", "impact_text", "set_cause",
           "suggest_cause"]
