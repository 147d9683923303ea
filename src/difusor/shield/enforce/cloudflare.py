"""Cloudflare: an account IP list (Rules → Lists) kept equal to the blocks, through the SDK.

A WAF custom rule the operator writes once (``ip.src in $difusor_bloqueados`` → Block) turns the
list into a block at the edge, before a request costs the origin anything. The calls, all under
``/client/v4/accounts/{account_id}/rules/lists/{list_id}/items``:

    GET    (paged by cursor)                        what the list holds
    POST   [{"ip": ..., "comment": ...}, ...]       add what is missing → an operation id
    DELETE {"items": [{"id": ...}, ...]}            remove what is no longer wanted → an operation id
    GET    …/rules/lists/bulk_operations/{id}       until the operation is completed (or failed)

List writes are asynchronous and Cloudflare refuses a new one (429) while another is pending, so
each write is awaited before the next. Only items whose comment starts with ``difusor`` are ever
deleted: addresses the operator put in the list by hand stay. Cloudflare lists take IPv6 networks
down to /64, so an IPv6 address is listed as its /64 (the shield's own IPv6 unit).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from typing import Any

from difusor.config import Config
from difusor.errors import ConfigError, ShieldError
from difusor.providers import Backoff, Transient, cloudflare_api, env_secret, retrying
from difusor.shield.enforce.base import EnforcerBase, Log, network, render_key
from difusor.shield.model import Block

MARK = "difusor"
TIMEOUT = 15.0
WAIT = 30.0  # the longest a list operation is awaited
RETRIES = 3  # 429s (another write pending) honoured before giving up
BACKOFF = Backoff(first=1.0, cap=30.0)  # Retry-After when Cloudflare sends it
BATCH = 1000
HINT = ("¿el token tiene el permiso «Cuenta › Listas de filtros de cuenta › Editar» (Account "
        "Filter Lists: Edit) en esta cuenta?")


class ListBusy(ShieldError, Transient):
    """Cloudflare refused a write with 429 (another one pending): waited out, then tried again."""


class CloudflareEnforcer(EnforcerBase):
    name = "cloudflare"

    def __init__(self, cfg: Config, *, token: str, log: Log | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """Reads ``[shield.cloudflare]`` (both ids checked when loading)."""
        super().__init__(cfg, log=log)
        s = cfg.shield.cloudflare
        self.account_id, self.list_id = s.account_id, s.list_id
        self.sleep = sleep
        self.client = cloudflare_api.client(token, api_url=s.api_url, timeout=TIMEOUT)
        self.refusals = cloudflare_api.Refusals(
            error=ShieldError, throttled=ListBusy,
            throttled_message="Cloudflare sigue limitando los cambios a la lista (429) tras "
                              f"{RETRIES} reintentos",
            token_hint=HINT, missing=f"la lista {self.list_id} de la cuenta {self.account_id}",
            fix="[shield.cloudflare] account_id y list_id",
            doing=" al cambiar la lista de bloqueos")

    @classmethod
    def from_config(cls, cfg: Config, *, env: Mapping[str, str], log: Log | None = None
                    ) -> CloudflareEnforcer:
        var = cfg.shield.cloudflare.token_env
        token = env_secret(env, var)
        if not token:
            raise ConfigError(f"[shield.cloudflare]: la variable de entorno {var or '(token_env)'} "
                              "está vacía o no existe (el token de la API de Cloudflare)")
        return cls(cfg, token=token, log=log)

    def _sync(self, blocks: list[Block], attack_mode: bool) -> bool:
        wanted = {_listable(b.key): b for b in blocks}
        present: dict[str, list[str]] = {}  # ip → ids of our items
        foreign: set[str] = set()
        for item in self._call(lambda: list(self.items.list(self.list_id,
                                                            account_id=self.account_id))):
            ip = getattr(item, "ip", None)
            net = network(ip) if ip else None
            if net is None:
                continue
            key = render_key(net)
            if (getattr(item, "comment", None) or "").startswith(MARK):
                present.setdefault(key, []).append(item.id)
            else:
                foreign.add(key)
        add = [{"ip": k, "comment": self._comment(b)} for k, b in wanted.items()
               if k not in present and k not in foreign]
        drop = [{"id": i} for k, ids in present.items() if k not in wanted for i in ids]
        for start in range(0, len(add), BATCH):
            chunk = add[start:start + BATCH]
            self._await(self._call(lambda c=chunk: self.items.create(  # type: ignore[misc]
                self.list_id, account_id=self.account_id, body=c)).operation_id)
        for start in range(0, len(drop), BATCH):
            chunk = drop[start:start + BATCH]
            self._await(self._call(lambda c=chunk: self.items.delete(  # type: ignore[misc]
                self.list_id, account_id=self.account_id, items=c)).operation_id)
        return bool(add or drop)

    @property
    def items(self) -> Any:
        return self.client.rules.lists.items

    def _comment(self, block: Block) -> str:
        return f"{MARK}: {block.reason} (hasta {self.when(block.until)})"[:200]

    def _await(self, operation_id: str) -> None:
        """Wait for an asynchronous list write to finish; ShieldError when it failed."""
        deadline = time.monotonic() + WAIT
        pause = 0.1
        while True:
            op = self._call(lambda: self.client.rules.lists.bulk_operations.get(
                operation_id, account_id=self.account_id))
            if op.status == "completed":
                return
            if op.status == "failed":
                raise ShieldError(f"Cloudflare no aplicó el cambio a la lista {self.list_id}: "
                                  f"{getattr(op, 'error', '') or 'falló'}")
            if time.monotonic() >= deadline:
                raise ShieldError(f"Cloudflare no terminó el cambio a la lista en {WAIT:.0f} s "
                                  f"(operación {operation_id})")
            self.sleep(pause)
            pause = min(2.0, pause * 2)

    def _call(self, call: Callable[[], Any]) -> Any:
        """One SDK call; the SDK's errors become one Spanish line (429s are waited out)."""

        def once() -> Any:
            try:
                return call()
            except cloudflare_api.API_ERRORS as exc:
                raise self.refusals(exc) from None

        return retrying(once, retries=RETRIES, backoff=BACKOFF, sleep=self.sleep)

    def close(self) -> None:
        self.client.close()


def _listable(key: str) -> str:
    """The key as Cloudflare lists take it: IPv6 no narrower than /64."""
    net = network(key)
    if net is not None and net.version == 6 and net.prefixlen > 64:
        return str(ipaddress.ip_network(f"{net.network_address}/64", strict=False))
    return key
