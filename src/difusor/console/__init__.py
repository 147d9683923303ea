"""The operator's console: one live page over the ledger and the live counters, with a few
audited actions. It runs in its own process (``difusor console serve``, started by ``difusor
run``) and never sits in the path of publishing or serving: it reads, and its actions call the
same functions as the CLI."""
