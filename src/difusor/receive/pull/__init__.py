"""HTTPS pull: for authorities that publish a download link instead of uploading to us.

Every ``pull.interval`` seconds :class:`Puller` asks for ``pull.url`` with the ETag and
Last-Modified of the last complete download (kept in ``state/pull.json``, so a restart does not
fetch the same package again); a 304 costs nothing. A new package streams into ``state/pull/``
(same filesystem as the inbox, never the inbox itself), within ``pull.max_bytes``; an interrupted
download continues where it stopped (``Range`` + ``If-Range``) when the server gave a strong
ETag. Only a whole file — as many bytes as announced, or a chunked body that ended properly — is
fsynced and delivered, with its ``NAME.sha256`` if the server publishes one at URL + ``.sha256``
(the only check left for a body without length or chunks, which ends when the server closes).
The same bytes as the last delivery are never delivered twice, whatever their ETag says.

``puller``: the schedule and the delivery; ``fetch``: one conditional download; ``client``: the
HTTP client and what its answers mean; ``state``: ``pull.json`` and the partial file.
"""

from difusor.receive.pull.puller import Puller

__all__ = ["Puller"]
