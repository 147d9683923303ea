"""The nginx configuration, rendered from the same header policy as the embedded server.

One file, for ``/etc/nginx/conf.d/`` (included inside ``http {}``): first the ``http``-level
pieces (rate-limit zone, JSON log format, maps: ``httplevel``), then the ``server`` blocks
(``servers``, with ``tls``), whose per-path headers are the policy's rules turned into nginx
locations (``regions``); with ``[sites]``, those blocks once per site (``sites``).
``standalone`` wraps it in a whole ``nginx.conf`` for a private nginx.
"""

from difusor.serve.nginxconf.conffile import NginxConfig
from difusor.serve.nginxconf.httplevel import LOG_FIELDS
from difusor.serve.nginxconf.regions import Location, glob_regex, header_locations, may_overlap
from difusor.serve.nginxconf.servers import REAL_IP_HEADERS, real_ip_header
from difusor.serve.nginxconf.standalone import standalone
from difusor.serve.nginxconf.tls import TLS_CIPHERS

__all__ = ["LOG_FIELDS", "REAL_IP_HEADERS", "TLS_CIPHERS", "Location", "NginxConfig", "glob_regex",
           "header_locations", "may_overlap", "real_ip_header", "standalone"]
