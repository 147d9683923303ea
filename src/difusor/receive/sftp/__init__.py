"""The embedded SFTP receiver: the authority uploads here; only complete files reach the inbox.

One asyncssh listener (``listener``), public-key login for one user (``login``: ``[sftp] user``,
keys re-read from ``authorized_keys`` on every connection), the sftp subsystem and nothing else,
chrooted to ``state/sftp`` (``session``). What makes an upload complete, and its delivery into
the inbox, is in ``uploads``. The throughput check logs in with the difusor's own key
(``checkkey``) and gets a scratch session that delivers nothing (``scratch``).
"""

from difusor.receive.sftp.checkkey import check_key
from difusor.receive.sftp.listener import CIPHERS, start_sftp_server
from difusor.receive.sftp.uploads import clean_abandoned

__all__ = ["CIPHERS", "check_key", "clean_abandoned", "start_sftp_server"]
