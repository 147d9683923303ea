"""Several named sites (``[sites.NAME]``) in one file: a ``server`` block (and, with TLS, its
redirect block) per site.

Each site's view of the file (``cfg.for_site(name)``) is a one-site difusor with its own state
folder, so its block serves that folder's ``store/site`` tree under the site's host names and
logs to that folder's ``logs/nginx-access.log``, the file the site's shield and analytics read.
The ``http``-level pieces (rate-limit zone, log format, maps) are declared once for all blocks
(``NginxConfig.http_level``). The default site (``default_site``) carries ``default_server``: a
Host no site names is served by it, as the embedded server's ``HostRouter`` does. Every site
shares ``[nginx]``: ports, the certificate (one naming every host, or a wildcard) and the ACME
webroot (one ``certbot --webroot`` for all the names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difusor.sites.catalog import default_site, site_configs

if TYPE_CHECKING:  # it imports us
    from difusor.serve.nginxconf.conffile import NginxConfig


def site_servers(conf: NginxConfig) -> list[NginxConfig]:
    """One ``NginxConfig`` per ``[sites.NAME]`` of ``conf``'s file, in the file's order."""
    cfg = conf.cfg
    # [nginx] root/access_log with [sites] and ill-formed wildcards: refused by config/sites.py.
    default = default_site(cfg)
    out = []
    for name, view in site_configs(cfg).items():
        one = type(conf)(view)
        one.name = name
        one.server_name = " ".join(view.site.hosts)
        one.default_server = name == default
        one.acme_root = conf.acme_root  # one webroot: one certbot run for every name
        # The embedded server picks the site by exact Host name: send it one of this site's.
        one.upstream_host = next((h for h in view.site.hosts if "*" not in h), "$host")
        out.append(one)
    return out
