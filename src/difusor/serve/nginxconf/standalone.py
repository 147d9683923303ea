"""A whole ``nginx.conf`` around our ``conf.d`` file, for a private nginx (tests, benches)."""

from __future__ import annotations

from pathlib import Path

from difusor.serve.nginxconf.syntax import quote


def standalone(include: Path, prefix: Path, *, user: str | None = None) -> str:
    """A whole ``nginx.conf`` around ``include`` whose pid, logs and temporary files live in
    ``prefix`` (for ``nginx -p PREFIX -c CONF``: tests, or a private nginx beside the system's)."""
    temps = "\n".join(f"    {kind}_temp_path {quote(str(prefix / 'tmp' / kind))};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        (f"user {user};\n" if user else "")
        + "worker_processes 1;\n"
        f"pid {quote(str(prefix / 'nginx.pid'))};\n"
        f"error_log {quote(str(prefix / 'error.log'))} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"{temps}\n"
        f"    include {quote(str(include))};\n"
        "}\n"
    )
