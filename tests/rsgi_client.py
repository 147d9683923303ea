"""Call the RSGI app in-process, the way granian would, and collect the answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from difusor.serve.app import DifusorApp


class Headers:
    def __init__(self, items: dict[str, str]) -> None:
        self._items = {k.lower(): v for k, v in items.items()}

    def get(self, key: str, default: object = None) -> object:
        return self._items.get(key, default)


@dataclass
class Scope:
    path: str
    method: str = "GET"
    query_string: str = ""
    client: str = "127.0.0.1:50000"
    proto: str = "http"
    headers: Headers = field(default_factory=lambda: Headers({}))
    authority: str | None = None  # HTTP/2's :authority; HTTP/1.1 requests carry Host instead


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        found = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(found) <= 1, f"duplicated header {name}: {found}"
        return found[0] if found else None


class Proto:
    def __init__(self) -> None:
        self.response: Response | None = None

    def _set(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        assert self.response is None, "two responses for one request"
        self.response = Response(status, list(headers), body)

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._set(status, headers, b"")

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._set(status, headers, bytes(body))

    def response_str(self, status: int, headers: list[tuple[str, str]], body: str) -> None:
        self._set(status, headers, body.encode())

    def response_file(self, status: int, headers: list[tuple[str, str]], file: str) -> None:
        self._set(status, headers, Path(file).read_bytes())

    def response_file_range(self, status: int, headers: list[tuple[str, str]], file: str,
                            start: int, end: int) -> None:
        self._set(status, headers, Path(file).read_bytes()[start:end])


def request(app: DifusorApp, path: str, method: str = "GET", query: str = "",
            headers: dict[str, str] | None = None) -> Response:
    proto = Proto()
    scope = Scope(path, method, query, headers=Headers(headers or {}))
    asyncio.run(app.__rsgi__(scope, proto))
    assert proto.response is not None
    return proto.response
