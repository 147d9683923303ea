"""Proof of no modification: a public, signed, hash-chained log of every corte the difusor put
live, and the check anyone can run against it.

``merkle`` is the root of a corte's files (path + SHA-256, sorted), ``signing`` the difusor's
Ed25519 key, ``chain`` the entry format, its hash and every check of a chain (the producer and
the verifier use the same functions), ``record`` appends an entry at each activation and
``published`` writes what the servers answer at ``/_difusor/cortes.json`` and
``/_difusor/manifest/<corte>.json``; ``verify`` is ``difusor verify``: a client that needs no
configuration. Beside ``store/``: it reads manifests; ``publish/`` calls ``record``.
"""
