"""``difusor check``: the live installation against the convocatoria's section II, item by
item, each with its clause and the evidence measured (what, when, against what).

``outcome`` is the shape of one result; ``web``, ``edge``, ``records`` and ``transfer`` measure;
``run`` runs them in order and writes the result to the ledger (the memoria cites it); ``show``
prints it for the terminal and as an HTML page. Downstream of every other room: it reads their
settings and calls their public functions, nothing calls it back.
"""
