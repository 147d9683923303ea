"""TLS for the site's ``server`` block: Mozilla's "intermediate" profile around our cert and key."""

from __future__ import annotations

from pathlib import Path

from difusor.serve.nginxconf.syntax import quote

# Mozilla's "intermediate" profile (ssl-config.mozilla.org, guideline 5.7): TLS 1.2 and 1.3.
TLS_PROTOCOLS = "TLSv1.2 TLSv1.3"
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
TLS_CURVES = "X25519:prime256v1:secp384r1"


def tls_directives(cert: Path | None, key: Path | None) -> list[str]:
    """The ``ssl_*`` lines of the HTTPS ``server`` block."""
    return [
        f"ssl_certificate {quote(str(cert))};",
        f"ssl_certificate_key {quote(str(key))};",
        "# Perfil «intermediate» de Mozilla.",
        f"ssl_protocols {TLS_PROTOCOLS};",
        f"ssl_ecdh_curve {TLS_CURVES};",
        f"ssl_ciphers {TLS_CIPHERS};",
        "ssl_prefer_server_ciphers off;",
        "ssl_session_timeout 1d;",
        "ssl_session_cache shared:difusor_tls:10m;",
        "ssl_session_tickets off;",
    ]
