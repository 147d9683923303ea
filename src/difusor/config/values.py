"""The value types sections share: addresses, URLs, networks, dates, and the section base.

Each check raises ``ValueError`` with a Spanish reason; pydantic turns it into an error that
names the key (see ``loading.py``).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

DEFAULT_CONFIG = "difusor.toml"
MAIN_JSON = "json/main.json"

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class Section(BaseModel):
    """A table of difusor.toml: unknown keys are refused, values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); raises ValueError with a Spanish reason."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", value.strip())
    if not m:
        raise ValueError(f"«{value}» no es una dirección HOST:PUERTO (p. ej. 127.0.0.1:8080)")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 1 <= port <= 65535:
        raise ValueError(f"el puerto {port} está fuera de 1–65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ValueError(f"«{host}» no es una IP ni un nombre de host válido") from None
    return host, port


def check_address(value: str) -> str:
    parse_address(value)
    return value


Address = Annotated[str, AfterValidator(check_address)]


def check_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"«{value}» no es una URL http:// o https://")
    return value.rstrip("/")


Url = Annotated[str, AfterValidator(check_url)]


def check_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"«{value}» no es una red CIDR (p. ej. 200.23.8.0/24)") from None
    return value


Network = Annotated[str, AfterValidator(check_network)]


def check_end(value: str) -> str:
    """An ISO 8601 moment with its zone, or "" (no date)."""
    if value:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"«{value}» no es una fecha ISO 8601") from None
        if when.tzinfo is None:
            raise ValueError(f"«{value}» debe llevar zona horaria, p. ej. -06:00")
    return value
