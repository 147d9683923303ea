"""The provider kit every family shares: the driver table, the retry loop, Retry-After, and the
one mapping of Cloudflare's SDK errors (worded by each caller)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from difusor.errors import ConfigError, DifusorError, PurgeError, ShieldError
from difusor.providers import Backoff, DriverTable, Transient, retry_after, retrying


class Busy(DifusorError, Transient):
    pass


def test_the_table_imports_a_driver_only_when_asked_and_lists_the_known_ones() -> None:
    table: DriverTable[object] = DriverTable(
        {"json": "json:JSONDecoder", "csv": "csv:DictReader"},
        unknown="formato desconocido «{name}»; usa uno de: {known}")
    assert table.names() == ["json", "csv"]
    import json

    assert table.load("json") is json.JSONDecoder
    with pytest.raises(ConfigError, match=r"^formato desconocido «xml»; usa uno de: json, csv$"):
        table.load("xml")


def test_retrying_doubles_its_waits_and_honours_retry_after() -> None:
    waits: list[float] = []
    tries: list[int] = []
    answers: list[BaseException | str] = [Busy("uno"), Busy("dos"), Busy("tres"), "hecho"]

    def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            if str(answer) == "dos":
                answer.retry_after = 7.0  # type: ignore[attr-defined]
            raise answer
        return answer

    done = retrying(call, retries=3, backoff=Backoff(first=0.5, cap=60), sleep=waits.append,
                    on_try=tries.append)
    assert done == "hecho" and tries == [1, 2, 3, 4]
    assert waits == [0.5, 7.0, 2.0]  # the vendor's 7 s instead of 1 s; then doubling goes on


def test_retrying_caps_every_wait_and_gives_up_with_the_last_error() -> None:
    waits: list[float] = []

    def always() -> None:
        err = Busy("sigue ocupado")
        err.retry_after = 3600.0
        raise err

    with pytest.raises(Busy, match="sigue ocupado"):
        retrying(always, retries=2, backoff=Backoff(first=1, cap=30), sleep=waits.append)
    assert waits == [30, 30]


def test_only_what_the_caller_names_is_retried() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise PurgeError("rechazado")

    with pytest.raises(PurgeError):
        retrying(refused, retries=5, backoff=Backoff(0.1, 1), sleep=lambda _s: None)
    assert calls == [1]
    calls.clear()
    with pytest.raises(PurgeError):  # anything, as an origin's phases are retried
        retrying(refused, retries=2, backoff=Backoff(0.1, 1), sleep=lambda _s: None,
                 retry_on=(Exception,))
    assert calls == [1, 1, 1]


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("pronto") is None
    assert 0 <= retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_the_kit_loads_no_vendor_sdk_by_itself() -> None:
    code = ("import sys, difusor.providers; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'cloudflare', 'boto3', 'botocore', 'akamai'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr


def test_one_cloudflare_mapping_worded_by_each_caller() -> None:
    import cloudflare

    from difusor.providers.cloudflare_api import Refusals
    from difusor.publish.cdn.base import RateLimited, Unavailable
    from difusor.shield.enforce.cloudflare import ListBusy

    request = httpx.Request("POST", "https://api.cloudflare.com/client/v4/x")

    def status(cls: type[cloudflare.APIStatusError], code: int, **headers: str
               ) -> cloudflare.APIStatusError:
        body = {"errors": [{"code": 10000, "message": "Authentication error"}]}
        return cls("x", response=httpx.Response(code, headers=headers, request=request),
                   body=body)

    cdn = Refusals(error=PurgeError, throttled=RateLimited, unavailable=Unavailable,
                   throttled_message="Cloudflare limitó las purgas (429)",
                   token_hint="¿permiso de purga?", missing="la zona z", fix="zone_id")
    shield = Refusals(error=ShieldError, throttled=ListBusy, throttled_message="sigue (429)",
                      token_hint="¿permiso de listas?", missing="la lista l de la cuenta a",
                      fix="account_id y list_id", doing=" al cambiar la lista")

    limited = cdn(status(cloudflare.RateLimitError, 429, **{"retry-after": "4"}))
    assert isinstance(limited, RateLimited) and limited.retry_after == 4.0
    assert isinstance(shield(status(cloudflare.RateLimitError, 429)), ListBusy)
    denied = status(cloudflare.PermissionDeniedError, 403)
    assert cdn(denied).message == ("Cloudflare rechazó el token (403; 10000: Authentication "
                                   "error): ¿permiso de purga?")
    assert isinstance(shield(denied), ShieldError) and "¿permiso de listas?" in shield(denied).message
    missing = status(cloudflare.NotFoundError, 404)
    assert cdn(missing).message.startswith("Cloudflare no encuentra la zona z (404; 10000")
    assert shield(missing).message.endswith("revisa account_id y list_id")
    down = status(cloudflare.InternalServerError, 503)
    assert isinstance(cdn(down), Unavailable) and cdn(down).message == "Cloudflare respondió 503"
    assert not isinstance(shield(down), Transient)  # the shield does not retry a 5xx
    assert shield(down).message.endswith(" al cambiar la lista")
    lost = cloudflare.APIConnectionError(request=request)
    assert isinstance(cdn(lost), Unavailable)
    assert type(shield(lost)) is ShieldError
    assert "no pude conectar con la API de Cloudflare" in shield(lost).message
