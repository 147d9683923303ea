"""Availability: probes that understand cortes, and the incidents they open.

``expected`` says what a healthy server serves now (from the ledger and the live manifest),
``probe`` checks one target against it, ``incidents`` turns probe results and ledger events into
incidents, and ``service`` runs it all every ``[monitor] interval`` under ``difusor run``.
"""
