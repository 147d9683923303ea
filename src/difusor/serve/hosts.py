"""One server, several sites: each request goes to the app of its ``Host``.

With ``[sites]`` every worker builds one ``DifusorApp`` per site (its own live corte, access log
and shield gate) and this router picks one per request by host name (port and case ignored). A
name no site claims goes to the default site, as nginx's ``default_server`` does: it is still
served, logged and watched by that site's shield, never dropped unseen.
"""

from __future__ import annotations

import asyncio
from typing import Any

from difusor.serve.app import DifusorApp


def host_name(value: str | None) -> str:
    """``Prep.Example.MX:8443`` → ``prep.example.mx``; ``[::1]:80`` → ``[::1]``."""
    if not value:
        return ""
    value = value.strip().lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostRouter:
    def __init__(self, apps: dict[str, DifusorApp], hosts: dict[str, str], default: str) -> None:
        self.apps = apps
        self.default = apps[default]
        self.by_host = {host: apps[name] for host, name in hosts.items() if "*" not in host}
        # ``*.prueba.medio.mx`` → ".prueba.medio.mx", longest first (nginx's order).
        self.wildcards = sorted(((host[1:], apps[name]) for host, name in hosts.items()
                                 if host.startswith("*.")), key=lambda w: -len(w[0]))

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        for app in self.apps.values():
            app.__rsgi_init__(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        for app in self.apps.values():
            app.__rsgi_del__(loop)

    def app_for(self, host: str) -> DifusorApp:
        app = self.by_host.get(host)
        if app is None:
            app = next((a for suffix, a in self.wildcards if host.endswith(suffix)), self.default)
        return app

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        app = self.app_for(host_name(scope.authority or scope.headers.get("host")))
        await app.__rsgi__(scope, proto)
