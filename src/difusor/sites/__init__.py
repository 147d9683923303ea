"""Named sites and the operation's phases (ARCHITECTURE: "Sites and phases").

    phase.py     the calendar's phase at a moment, the operator's override (ledger)
    catalog.py   each site's view of the config, the default site, where a package goes
"""
