"""A raw HTTP/1.1 keep-alive client bound to a source address: what a flood needs.

httpx tops out far below what one attacker must send; this client writes a request line and reads
one response (Content-Length, chunked or until close), nothing more.
"""

from __future__ import annotations

import asyncio

# What a failed request raises (TimeoutError is an OSError); a malformed answer is a failure too.
FAILED = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError)
TIMEOUT = 5.0  # a visitor's request that takes longer has failed


class Link:
    """One connection to the target from a fixed source address."""

    def __init__(self, host: str, port: int, src: str | None, agent: str) -> None:
        self.host, self.port, self.src, self.agent = host, port, src, agent
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, timeout: float) -> None:
        local = (self.src, 0) if self.src else None
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, local_addr=local), timeout)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def get(self, path: str, timeout: float = TIMEOUT, *, close: bool = False
                  ) -> tuple[int, bytes]:
        """One GET; (status, body). The connection is kept when the server keeps it."""
        if self.writer is None:
            await self.open(timeout)
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUser-Agent: "
                          f"{self.agent}\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n"
                          f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
                          .encode())
        try:
            status, body, keep = await asyncio.wait_for(_response(self.reader), timeout)
        except BaseException:
            self.close()
            raise
        if not keep or close:
            self.close()
        return status, body


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        if status >= 200:
            break
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    keep = headers.get("connection", "").lower() != "close" and lines[0].startswith("HTTP/1.1")
    if status in (204, 304):
        return status, b"", keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while (size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16)):
            body += (await reader.readexactly(size + 2))[:-2]
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        return status, bytes(body), keep
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"])), keep
    return status, await reader.read(), False
