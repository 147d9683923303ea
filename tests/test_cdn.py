"""CDN purge drivers against local doubles of each vendor's API, through the real SDKs.

Each double is a loopback HTTP server that records every request and answers like the vendor.
``PurgerContract`` holds what every driver must do (batches within the limit, 429 back-off that
honours Retry-After, refused credentials as one Spanish line, retried server errors, purging
everything in one request, unusable settings or secrets as a configuration error naming the
CDN); each driver's class — Varnish's included — inherits it and adds the exact request shape of
its API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from difusor import config as config_mod
from difusor.errors import ConfigError
from difusor.headers import HeaderPolicy
from difusor.ledger import Ledger
from difusor.publish.cdn import DRIVERS, Purger, after_publish, expected_at_edge, purge_paths, purger_for
from difusor.store.manifest import FileEntry, Manifest

SITE = "https://prep.example.mx"
MAIN = f"{SITE}/json/main.json"
MAIN_CC = "no-cache, no-store, must-revalidate"
Answer = tuple[int, dict[str, str], bytes]


# -- the doubles ----------------------------------------------------------------------------

@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float

    def json(self) -> object:
        return json.loads(self.body)


class ApiDouble:
    """A stand-in for a vendor's API on loopback: records requests, answers from ``script`` first
    (one scripted answer per request, in order) and then with ``answer``."""

    def __init__(self, answer: Callable[[Seen], Answer]) -> None:
        self.answer = answer
        self.script: list[Answer] = []
        self.seen: list[Seen] = []
        lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path,
                            {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                with lock:
                    double.seen.append(seen)
                    scripted = double.script.pop(0) if double.script else None
                status, headers, payload = scripted or double.answer(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PURGE = do_BAN = handle_any

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> ApiDouble:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_answer(status: int, doc: object, **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(doc).encode()


def make_config(tmp_path: Path, **cdn: object) -> config_mod.Config:
    root = tmp_path / "difusor"
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "keys" / "authorized_keys").write_text("")
    return config_mod.from_dict({"site": {"url": SITE}, "cdn": [cdn]}, root=root)


def urls(n: int) -> list[str]:
    return [f"{SITE}/json/casillas/{i:04d}.json" for i in range(n)] + [MAIN]


# -- what every driver must do --------------------------------------------------------------

class PurgerContract:
    limit: int  # URLs per request by default
    env: ClassVar[dict[str, str]] = {}
    throttled: Answer  # the vendor's "too many requests"
    throttle_wait: float  # the least back-off that honours it
    denied: Answer
    denied_hint: str  # part of the Spanish line
    # Settings changed (or a different environment) that leave the driver unusable, and part of
    # the Spanish line that says why.
    unusable: ClassVar[list[tuple[dict[str, object], dict[str, str] | None, str]]]

    def settings(self, api: ApiDouble, tmp_path: Path) -> dict[str, object]:
        raise NotImplementedError

    def check_purge_all(self, seen: Seen) -> None:
        """The one request that purges everything."""
        raise NotImplementedError

    def ok(self, seen: Seen) -> Answer:
        raise NotImplementedError

    def urls_in(self, seen: Seen) -> list[str]:
        raise NotImplementedError

    def check_auth(self, seen: Seen) -> None:
        raise NotImplementedError

    @pytest.fixture
    def api(self) -> Iterator[ApiDouble]:
        self.made: list[Purger] = []
        with ApiDouble(lambda s: self.ok(s)) as double:
            yield double
            for purger in self.made:
                purger.close()

    def purger(self, api: ApiDouble, tmp_path: Path, **extra: object) -> Purger:
        cfg = make_config(tmp_path, **{**self.settings(api, tmp_path), **extra})
        purger = purger_for(cfg, cfg.cdn[0], env=self.env)
        self.made.append(purger)
        return purger

    @pytest.mark.slow
    def test_every_url_is_sent_once_within_the_batch_limit(self, api, tmp_path) -> None:
        wanted = urls(65)
        result = self.purger(api, tmp_path).purge(wanted)
        assert result.ok, result.message
        assert result.urls == 66
        carried = [u for s in api.seen for u in self.urls_in(s)]
        assert sorted(carried) == sorted(wanted)
        assert max(len(self.urls_in(s)) for s in api.seen) <= self.limit
        assert len(api.seen) == math.ceil(66 / self.limit) == result.requests
        for seen in api.seen:
            self.check_auth(seen)
        assert "66 URL purgadas" in result.message

    @pytest.mark.slow
    def test_429_backs_off_as_long_as_retry_after_asks(self, api, tmp_path) -> None:
        api.script.append(self.throttled)
        result = self.purger(api, tmp_path).purge([MAIN])
        assert result.ok, result.message
        assert result.retries == 1 and len(api.seen) == 2
        assert api.seen[1].at - api.seen[0].at >= self.throttle_wait
        assert self.urls_in(api.seen[1]) == [MAIN]
        assert "1 reintentos" in result.message

    def test_refused_credentials_are_one_spanish_line_and_not_retried(self, api, tmp_path) -> None:
        api.script.append(self.denied)
        result = self.purger(api, tmp_path).purge([MAIN])
        assert not result.ok
        assert len(api.seen) == 1
        assert "no se pudo purgar" in result.message and self.denied_hint in result.message
        assert "\n" not in result.message

    @pytest.mark.slow
    def test_server_errors_are_retried_then_reported(self, api, tmp_path) -> None:
        api.script.extend([(503, {"Content-Type": "text/plain"}, b"ocupado")] * 2)
        result = self.purger(api, tmp_path, retries=1).purge([MAIN])
        assert not result.ok and len(api.seen) == 2
        assert "503" in result.message and "tras 1 reintentos" in result.message

    def test_purge_all_is_one_request(self, api, tmp_path) -> None:
        result = self.purger(api, tmp_path).purge_all()
        assert result.ok and result.everything, result.message
        [seen] = api.seen
        self.check_purge_all(seen)
        self.check_auth(seen)

    def test_nothing_to_purge_asks_nothing(self, api, tmp_path) -> None:
        result = self.purger(api, tmp_path).purge([])
        assert result.ok and result.requests == 0 and api.seen == []

    def test_unusable_settings_or_secrets_are_a_config_error_naming_the_cdn(self, api, tmp_path
                                                                            ) -> None:
        for n, (changed, env, hint) in enumerate(self.unusable):
            settings = {**self.settings(api, tmp_path), **changed}
            cfg = make_config(tmp_path / str(n), **settings)
            with pytest.raises(ConfigError, match=re.escape(hint)) as err:
                purger_for(cfg, cfg.cdn[0], env=self.env if env is None else env)
            label = settings.get("name") or settings["kind"]
            assert err.value.message.startswith(f"[[cdn]] «{label}»: "), err.value.message
            assert err.value.exit_code == 3
        assert api.seen == []


# -- Cloudflare (official SDK) --------------------------------------------------------------

class TestCloudflare(PurgerContract):
    limit = 30
    env: ClassVar[dict[str, str]] = {"CF_TOKEN": "cf-secreto"}
    throttled = json_answer(429, {"success": False, "errors": [
        {"code": 971, "message": "Please wait and consider throttling your request speed"}],
        "messages": [], "result": None}, **{"Retry-After": "1"})
    throttle_wait = 1.0
    denied = json_answer(403, {"success": False, "errors": [
        {"code": 10000, "message": "Authentication error"}], "messages": [], "result": None})
    denied_hint = "permiso"
    unusable: ClassVar = [({}, {}, "la variable de entorno CF_TOKEN está vacía o no existe"),
                          ({"token_env": ""}, None, "falta token_env"),
                          ({"zone_id": ""}, None, "cloudflare necesita zone_id")]

    def settings(self, api, tmp_path):
        return {"kind": "cloudflare", "name": "cf", "zone_id": "023e105f4ecef8ad9ca31a8372d0c353",
                "token_env": "CF_TOKEN", "api_url": api.url + "/client/v4"}

    def check_purge_all(self, seen):
        assert seen.path == "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/purge_cache"
        assert seen.json() == {"purge_everything": True}

    def ok(self, seen):
        return json_answer(200, {"success": True, "errors": [], "messages": [],
                                 "result": {"id": f"purga-{len(seen.body)}"}})

    def urls_in(self, seen):
        return seen.json()["files"]

    def check_auth(self, seen):
        assert seen.headers["authorization"] == "Bearer cf-secreto"

    def test_request_shape(self, api, tmp_path) -> None:
        result = self.purger(api, tmp_path).purge([f"{SITE}/", MAIN])
        [seen] = api.seen
        assert seen.method == "POST"
        assert seen.path == "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/purge_cache"
        assert seen.headers["content-type"] == "application/json"
        assert seen.json() == {"files": [f"{SITE}/", MAIN]}
        assert result.ids == [f"purga-{len(seen.body)}"]

    def test_batch_size_raises_the_limit_for_bigger_plans(self, api, tmp_path) -> None:
        self.purger(api, tmp_path, batch_size=100).purge(urls(150))
        assert [len(self.urls_in(s)) for s in api.seen] == [100, 51]



# -- Fastly ---------------------------------------------------------------------------------

class TestFastly(PurgerContract):
    limit = 1
    env: ClassVar[dict[str, str]] = {"FASTLY_KEY": "fastly-secreto"}
    throttled = json_answer(429, {"msg": "Too many requests"}, **{"Retry-After": "1"})
    throttle_wait = 1.0
    denied = json_answer(403, {"msg": "Provided credentials are missing or invalid"})
    denied_hint = "purge_select"
    unusable: ClassVar = [({}, {"OTRA": "x"}, "la variable de entorno FASTLY_KEY está vacía"),
                          ({"token_env": ""}, None, "falta token_env")]

    def settings(self, api, tmp_path):
        return {"kind": "fastly", "service_id": "SU1Z0isxPaozGVKXdv0eY", "token_env": "FASTLY_KEY",
                "api_url": api.url}

    def check_purge_all(self, seen):
        assert (seen.method, seen.path) == ("POST", "/service/SU1Z0isxPaozGVKXdv0eY/purge_all")

    def ok(self, seen):
        return json_answer(200, {"status": "ok", "id": "108-1391560174-974124"})

    def urls_in(self, seen):
        assert seen.path.startswith("/purge/")
        return ["https://" + seen.path[len("/purge/"):]]

    def check_auth(self, seen):
        assert seen.headers["fastly-key"] == "fastly-secreto"

    def test_request_shape(self, api, tmp_path) -> None:
        result = self.purger(api, tmp_path).purge([MAIN])
        [seen] = api.seen
        assert (seen.method, seen.path) == ("POST", "/purge/prep.example.mx/json/main.json")
        assert seen.headers["accept"] == "application/json"
        assert "fastly-soft-purge" not in seen.headers
        assert seen.body == b""
        assert result.ids == ["108-1391560174-974124"]

    def test_soft_purge(self, api, tmp_path) -> None:
        self.purger(api, tmp_path, soft=True).purge([MAIN])
        assert api.seen[0].headers["fastly-soft-purge"] == "1"

    def test_purge_all_without_a_service_says_which_key(self, api, tmp_path) -> None:
        result = self.purger(api, tmp_path, service_id="").purge_all()
        assert not result.ok and "service_id" in result.message and api.seen == []


# -- CloudFront (boto3) ---------------------------------------------------------------------

CF_NS = "{http://cloudfront.amazonaws.com/doc/2020-05-31/}"


def _invalidation(seen: Seen) -> Answer:
    batch = ET.fromstring(seen.body)
    paths = "".join(f"<Path>{p.text}</Path>" for p in batch.iter(f"{CF_NS}Path"))
    quantity = batch.find(f"{CF_NS}Paths/{CF_NS}Quantity").text
    ref = batch.find(f"{CF_NS}CallerReference").text
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Invalidation xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">'
        f"<Id>I{len(seen.body)}EXAMPLE</Id><Status>InProgress</Status>"
        "<CreateTime>2024-12-09T02:30:00Z</CreateTime>"
        f"<InvalidationBatch><Paths><Quantity>{quantity}</Quantity><Items>{paths}</Items></Paths>"
        f"<CallerReference>{ref}</CallerReference></InvalidationBatch></Invalidation>"
    ).encode()
    return 201, {"Content-Type": "text/xml", "Location": f"https://cloudfront/{seen.path}"}, body


def _aws_error(status: int, code: str, message: str) -> Answer:
    body = ('<?xml version="1.0"?><ErrorResponse xmlns="http://cloudfront.amazonaws.com/doc/'
            f'2020-05-31/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}'
            "</Message></Error><RequestId>5d1d2c8c-example</RequestId></ErrorResponse>").encode()
    return status, {"Content-Type": "text/xml"}, body


class TestCloudFront(PurgerContract):
    limit = 3000
    env: ClassVar[dict[str, str]] = {
        "AWS_PAR": "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
    throttled = _aws_error(400, "Throttling", "Rate exceeded")  # AWS throttles with a 400
    throttle_wait = 0.5  # no Retry-After from AWS: the template's first back-off
    denied = _aws_error(403, "AccessDenied", "User is not authorized to perform "
                        "cloudfront:CreateInvalidation")
    denied_hint = "cloudfront:CreateInvalidation"
    unusable: ClassVar = [({"distribution_id": ""}, None, "cloudfront necesita distribution_id"),
                          ({}, {"AWS_PAR": "sin-dos-puntos"},
                           "AWS_PAR debe tener la forma ACCESS_KEY_ID:SECRET_ACCESS_KEY")]

    def settings(self, api, tmp_path):
        return {"kind": "cloudfront", "distribution_id": "EDFDVBD6EXAMPLE", "token_env": "AWS_PAR",
                "api_url": api.url}

    def check_purge_all(self, seen):
        assert seen.path == "/2020-05-31/distribution/EDFDVBD6EXAMPLE/invalidation"
        assert [p.text for p in ET.fromstring(seen.body).iter(f"{CF_NS}Path")] == ["/*"]

    def ok(self, seen):
        return _invalidation(seen)

    def urls_in(self, seen):
        return [SITE + p.text for p in ET.fromstring(seen.body).iter(f"{CF_NS}Path")]

    def check_auth(self, seen):
        auth = seen.headers["authorization"]
        assert re.match(r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/us-east-1/cloudfront/"
                        r"aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$", auth)

    def test_request_shape(self, api, tmp_path) -> None:
        purger = self.purger(api, tmp_path)
        result = purger.purge([f"{SITE}/", MAIN])
        purger.purge([MAIN])
        first = api.seen[0]
        assert len(api.seen) == 2
        assert (first.method, first.path) == (
            "POST", "/2020-05-31/distribution/EDFDVBD6EXAMPLE/invalidation")
        batch = ET.fromstring(first.body)
        assert batch.tag == f"{CF_NS}InvalidationBatch"
        assert batch.find(f"{CF_NS}Paths/{CF_NS}Quantity").text == "2"
        assert [p.text for p in batch.iter(f"{CF_NS}Path")] == ["/", "/json/main.json"]
        refs = [ET.fromstring(s.body).find(f"{CF_NS}CallerReference").text for s in api.seen]
        assert all(refs) and refs[0] != refs[1]  # a new invalidation each time, never a replay
        assert result.ids == [f"I{len(first.body)}EXAMPLE"]

    def test_more_than_3000_paths_become_one_wildcard(self, api, tmp_path) -> None:
        result = self.purger(api, tmp_path).purge(urls(3000))
        assert result.ok
        [seen] = api.seen
        assert [p.text for p in ET.fromstring(seen.body).iter(f"{CF_NS}Path")] == ["/*"]


# -- Akamai (Fast Purge v3, EdgeGrid) -------------------------------------------------------

EDGERC = """[default]
client_secret = SOYUNSECRETOdeEJEMPLO+abcdefghijklmnopqrst=
host = akab-ejemplo.purge.akamaiapis.net
access_token = akab-access-token-ejemplo
client_token = akab-client-token-ejemplo
"""


def edgegrid_valid(seen: Seen, scheme: str = "http") -> bool:
    """Check the EG1-HMAC-SHA256 signature as Akamai's servers do (spec, not the library)."""
    auth = seen.headers["authorization"]
    unsigned, _, signature = auth.rpartition("signature=")
    fields = dict(kv.split("=", 1) for kv in unsigned[len("EG1-HMAC-SHA256 "):].strip(";").split(";"))
    secret = "SOYUNSECRETOdeEJEMPLO+abcdefghijklmnopqrst="

    def mac(key: str, msg: str) -> str:
        return base64.b64encode(hmac.new(key.encode(), msg.encode(), hashlib.sha256).digest()).decode()

    content_hash = base64.b64encode(hashlib.sha256(seen.body).digest()).decode()
    data = "\t".join([seen.method, scheme, seen.headers["host"], seen.path, "", content_hash,
                      unsigned])
    return hmac.compare_digest(mac(mac(secret, fields["timestamp"]), data), signature)


class TestAkamai(PurgerContract):
    limit = 10_000
    throttled = json_answer(429, {"type": "https://problems.purge.akamaiapis.net/-/pep-authz/"
                                  "rate-limit", "title": "Rate Limit exceeded", "status": 429},
                            **{"Retry-After": "1"})
    throttle_wait = 1.0
    denied = json_answer(403, {"title": "Forbidden", "status": 403,
                               "detail": "Unauthorized arl"})
    denied_hint = "CCU APIs"
    unusable: ClassVar = [({"edgerc": "/no-existe/edgerc"}, None, "credenciales de Akamai"),
                          ({"edgerc_section": "otra"}, None, "no tiene la sección [otra]")]

    def check_purge_all(self, seen):  # the configured CP code
        assert seen.path == "/ccu/v3/invalidate/cpcode/production"
        assert seen.json() == {"objects": [12345]}

    def settings(self, api, tmp_path):
        rc = tmp_path / "edgerc"
        rc.write_text(EDGERC)
        rc.chmod(0o600)
        return {"kind": "akamai", "edgerc": str(rc), "api_url": api.url, "cp_code": "12345"}

    def ok(self, seen):
        return json_answer(201, {"httpStatus": 201, "detail": "Request accepted",
                                 "estimatedSeconds": 5, "purgeId": "e535071c-26b2-11e7-94d7",
                                 "supportId": "17PY1492793544958045-219026624"})

    def urls_in(self, seen):
        return seen.json()["objects"]

    def check_auth(self, seen):
        assert re.match(r"EG1-HMAC-SHA256 client_token=akab-client-token-ejemplo;"
                        r"access_token=akab-access-token-ejemplo;timestamp=\d{8}T\d\d:\d\d:\d\d"
                        r"\+0000;nonce=[0-9a-f-]{36};signature=[A-Za-z0-9+/]+=*$",
                        seen.headers["authorization"])
        assert edgegrid_valid(seen)

    def test_request_shape(self, api, tmp_path) -> None:
        result = self.purger(api, tmp_path).purge([f"{SITE}/", MAIN])
        [seen] = api.seen
        assert (seen.method, seen.path) == ("POST", "/ccu/v3/invalidate/url/production")
        assert seen.headers["content-type"] == "application/json"
        assert seen.json() == {"objects": [f"{SITE}/", MAIN]}
        assert result.ids == ["e535071c-26b2-11e7-94d7"]

    def test_batches_stay_under_50000_bytes(self, api, tmp_path) -> None:
        long = [f"{SITE}/json/{'x' * 200}/{i}.json" for i in range(1000)]
        assert self.purger(api, tmp_path, network="staging").purge(long).ok
        assert len(api.seen) > 1
        assert all(len(s.body) <= 50_000 for s in api.seen)
        assert all(s.path == "/ccu/v3/invalidate/url/staging" for s in api.seen)
        assert sorted(u for s in api.seen for u in self.urls_in(s)) == sorted(long)

    def test_purge_all_without_a_cp_code_says_which_key(self, api, tmp_path) -> None:
        result = self.purger(api, tmp_path, cp_code="").purge_all()
        assert not result.ok and "cp_code" in result.message and api.seen == []

    def test_a_world_readable_edgerc_warns(self, api, tmp_path) -> None:
        settings = self.settings(api, tmp_path)
        Path(str(settings["edgerc"])).chmod(0o644)
        cfg = make_config(tmp_path, **settings)
        purger = purger_for(cfg, cfg.cdn[0], env={})
        purger.close()
        assert any("chmod 600" in w for w in purger.warnings)


# -- Varnish (HTTP PURGE / BAN) ----------------------------------------------------------------

class TestVarnish(PurgerContract):
    limit = 1  # one PURGE per URL, several in flight
    throttled = (429, {"Retry-After": "1"}, b"despacio")  # a rate limit in front of the edge
    throttle_wait = 1.0
    denied = (403, {}, b"PURGE no permitido")
    denied_hint = "ACL «purgadores»"
    unusable: ClassVar = [({"edge_url": "", "purge_url": ""}, None,
                           "varnish necesita purge_url o edge_url")]

    def settings(self, api, tmp_path):
        return {"kind": "varnish", "edge_url": "http://cdn.example.mx", "purge_url": api.url}

    def ok(self, seen):
        return 200, {}, b"Purged"

    def urls_in(self, seen):
        assert seen.method == "PURGE"
        return [SITE + seen.path]

    def check_auth(self, seen):  # the ACL is by address; the Host is the public site's
        assert seen.headers["host"] == "prep.example.mx"

    def check_purge_all(self, seen):
        assert (seen.method, seen.path) == ("BAN", "/")
        assert seen.headers["x-ban-url"] == "."

    def test_request_shape(self, api, tmp_path) -> None:
        result = self.purger(api, tmp_path).purge(
            [f"{SITE}/", f"{SITE}/json/Presidencia%20Municipal.json", MAIN])
        assert result.ok and result.requests == 3
        assert sorted((s.method, s.path) for s in api.seen) == [
            ("PURGE", "/"), ("PURGE", "/json/Presidencia%20Municipal.json"),
            ("PURGE", "/json/main.json")]
        assert {s.headers["host"] for s in api.seen} == {"prep.example.mx"}

    def test_edge_url_is_purged_when_there_is_no_purge_url(self, api, tmp_path) -> None:
        assert self.purger(api, tmp_path, edge_url=api.url, purge_url="").purge([MAIN]).ok
        assert [(s.method, s.path) for s in api.seen] == [("PURGE", "/json/main.json")]


# -- the table, what to purge, the header policy ------------------------------------------------

def test_unknown_driver_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="CDN desconocida «keycdn»; usa una de: varnish, "
                       "cloudflare, fastly, cloudfront, akamai"):
        DRIVERS.load("keycdn")


def test_each_kind_takes_only_its_own_keys(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"clave desconocida «zone_id» en \[\[cdn\]\] n\.º 1"):
        make_config(tmp_path, kind="fastly", zone_id="z")
    with pytest.raises(ConfigError, match=r"cdn\.0\.kind: valor «keycdn» no permitido; usa "
                       "'varnish', 'cloudflare', 'fastly', 'cloudfront' or 'akamai'"):
        make_config(tmp_path, kind="keycdn")
    with pytest.raises(ConfigError, match=r"cdn\.0\.kind: falta este valor"):
        make_config(tmp_path, name="sin tipo")
    with pytest.raises(ConfigError, match=r"cdn\.0\.retries: debe ser ≤ 20"):
        make_config(tmp_path, kind="akamai", retries=50)


def test_sdks_load_only_when_their_driver_is_used() -> None:
    code = ("import sys, difusor.publish.cdn, difusor.cli.app as a; a.app; "  # the whole tree
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'cloudflare', 'boto3', 'botocore', 'akamai'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr


def manifest(release: str, files: dict[str, bytes]) -> Manifest:
    return Manifest(release, "2024-12-08T20:30:00-06:00", "test", f"{release}.zip", "0" * 64,
                    "full", None, "2024-12-09T02:30:00+00:00",
                    {p: FileEntry(hashlib.sha256(b).hexdigest(), len(b), "application/json")
                     for p, b in files.items()})


def test_purge_paths_are_exactly_what_changed_with_main_json_last() -> None:
    old = manifest("a", {"index.html": b"1", "json/main.json": b"1", "json/a.json": b"1",
                         "json/b.json": b"1", "viejo/index.html": b"1", "css/x.css": b"1"})
    new = manifest("b", {"index.html": b"2", "json/main.json": b"2", "json/a.json": b"1",
                         "json/b.json": b"2", "nuevo/index.html": b"1", "css/x.css": b"1",
                         ".oculto": b"1"})
    assert purge_paths(old, new, "json/main.json") == [
        "/", "/index.html", "/json/b.json", "/nuevo", "/nuevo/", "/nuevo/index.html", "/viejo",
        "/viejo/", "/viejo/index.html", "/json/main.json"]
    assert purge_paths(new, new, "json/main.json") == ["/json/main.json"]  # always main.json
    first = purge_paths(None, old, "json/main.json")
    assert first[-1] == "/json/main.json" and len(first) == 9


def test_edge_expectations_check_main_json_first_and_a_stable_sample() -> None:
    files = {f"json/c{i}.json": str(i).encode() for i in range(100)}
    old = manifest("a", {**files, "json/main.json": b"1", "quitado.json": b"x"})
    new = manifest("b", {**{p: b + b"!" for p, b in files.items()}, "json/main.json": b"2"})
    paths = purge_paths(old, new, "json/main.json")
    got = expected_at_edge(paths, old, new, "json/main.json", sample=10)
    assert next(iter(got)) == "/json/main.json"
    assert got["/json/main.json"] == new.files["json/main.json"].sha256
    assert len(got) == 11
    assert got == expected_at_edge(paths, old, new, "json/main.json", sample=10)
    everything = expected_at_edge(paths, old, new, "json/main.json", sample=1000)
    assert everything["/quitado.json"] is None  # removed: the edge must answer 404


def policy_for(tmp_path: Path, *cdns: dict[str, object]) -> HeaderPolicy:
    root = tmp_path / "d"
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "keys" / "authorized_keys").write_text("")
    return HeaderPolicy.from_config(config_mod.from_dict({"cdn": list(cdns)}, root=root))


def test_targeted_caching_leaves_the_browser_header_exactly_as_required(tmp_path) -> None:
    policy = policy_for(tmp_path, {"kind": "varnish", "edge_url": "http://e", "targeted_seconds": 5},
                        {"kind": "cloudflare", "targeted_seconds": 10})
    headers = dict(policy.headers_for("json/main.json"))
    assert headers["Cache-Control"] == MAIN_CC
    assert headers["CDN-Cache-Control"] == "max-age=5"  # the shortest asked for wins
    assert headers["Surrogate-Control"] == "max-age=5"
    other = dict(policy.headers_for("json/casillas/1.json"))
    assert "CDN-Cache-Control" not in other and "Surrogate-Control" not in other


def test_no_targeted_caching_by_default(tmp_path) -> None:
    for policy in (policy_for(tmp_path), policy_for(tmp_path, {"kind": "varnish"})):
        headers = dict(policy.headers_for("json/main.json"))
        assert headers["Cache-Control"] == MAIN_CC
        assert "CDN-Cache-Control" not in headers and "Surrogate-Control" not in headers


# -- after a publication: purge, then proof at the edge ----------------------------------------

class Edge:
    """A double of the edge itself: serves whatever bytes ``files`` holds now."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def __call__(self, seen: Seen) -> Answer:
        body = self.files.get(urlsplit(seen.path).path)
        return (200, {}, body) if body is not None else (404, {}, b"no")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as led:
        yield led


def cloudflare_cdn(api: ApiDouble, edge: ApiDouble, **extra: object) -> dict[str, object]:
    return {"kind": "cloudflare", "name": "cf", "zone_id": "z1", "token_env": "CF_TOKEN",
            "api_url": api.url + "/client/v4", "edge_url": edge.url, "verify_timeout": 5, **extra}


def test_after_publish_purges_what_changed_and_proves_it_at_the_edge(
        tmp_path, ledger, monkeypatch) -> None:
    monkeypatch.setenv("CF_TOKEN", "cf-secreto")
    old = manifest("a", {"json/main.json": b"viejo", "json/a.json": b"igual", "index.html": b"1"})
    new = manifest("b", {"json/main.json": b"nuevo", "json/a.json": b"igual", "index.html": b"2"})
    served = Edge({"/json/main.json": b"viejo", "/json/a.json": b"igual", "/": b"1",
                   "/index.html": b"1"})
    ok = TestCloudflare().ok

    def purge_then_serve(seen: Seen) -> Answer:
        served.files.update({"/json/main.json": b"nuevo", "/": b"2", "/index.html": b"2"})
        return ok(seen)

    with ApiDouble(purge_then_serve) as api, ApiDouble(served) as edge:
        cfg = make_config(tmp_path, **cloudflare_cdn(api, edge))
        lines: list[str] = []
        report = after_publish(cfg, ledger, old, new, log=lines.append)
    assert report.ok, report.lines()
    assert api.seen[0].json() == {"files": [f"{SITE}/", f"{SITE}/index.html", MAIN]}
    [purge] = ledger.events("purge")
    assert purge["detail"]["urls"] == 3 and purge["detail"]["provider"] == "cloudflare"
    assert purge["release_id"] == "b" and purge["detail"]["ms"] >= 0
    [verified] = ledger.events("edge_verified")
    assert verified["detail"]["checked"] == 3 and verified["detail"]["stale"] == []
    assert verified["detail"]["ms"] < 5000
    assert any("ya sirve los bytes nuevos" in line for line in lines)


@pytest.mark.slow
def test_a_stale_edge_is_recorded_as_such(tmp_path, ledger, monkeypatch) -> None:
    monkeypatch.setenv("CF_TOKEN", "cf-secreto")
    old = manifest("a", {"json/main.json": b"viejo"})
    new = manifest("b", {"json/main.json": b"nuevo"})
    with ApiDouble(TestCloudflare().ok) as api, ApiDouble(Edge({"/json/main.json": b"viejo"})) as edge:
        cfg = make_config(tmp_path, **cloudflare_cdn(api, edge, verify_timeout=0.5))
        report = after_publish(cfg, ledger, old, new)
    assert not report.ok
    [stale] = ledger.events("edge_stale")
    assert stale["detail"]["stale"] == ["/json/main.json"]
    assert "seguía sirviendo bytes viejos" in stale["message"]
    assert len(ledger.events("purge")) == 1


def test_a_failed_purge_is_recorded_and_not_verified(tmp_path, ledger, monkeypatch) -> None:
    monkeypatch.delenv("CF_TOKEN", raising=False)
    new = manifest("b", {"json/main.json": b"nuevo"})
    with ApiDouble(TestCloudflare().ok) as api, ApiDouble(Edge({})) as edge:
        cfg = make_config(tmp_path, **cloudflare_cdn(api, edge))
        report = after_publish(cfg, ledger, None, new)
        assert edge.seen == [] and api.seen == []
    assert not report.ok
    [failed] = ledger.events("purge_failed")
    assert "CF_TOKEN" in failed["message"] and failed["detail"]["provider"] == "cloudflare"


# -- difusor purge ---------------------------------------------------------------------------

def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


@pytest.mark.slow
def test_purge_command(tmp_path) -> None:
    with ApiDouble(TestCloudflare().ok) as api:
        root = tmp_path / "d"
        (root / "keys").mkdir(parents=True)
        (root / "keys" / "authorized_keys").write_text("")
        conf = root / "difusor.toml"
        conf.write_text(config_mod.render_default() + f"""
[[cdn]]
kind = "cloudflare"
name = "cf"
zone_id = "z1"
token_env = "CF_TOKEN"
api_url = "{api.url}/client/v4"
""")
        r = run_cli("purge", "json/main.json", "/index.html", "--config", str(conf),
                    env={"CF_TOKEN": "t"})
        assert r.returncode == 0, r.stderr
        assert "CDN «cf» (cloudflare): 2 URL purgadas" in r.stdout
        assert api.seen[0].json() == {"files": ["http://127.0.0.1:8080/json/main.json",
                                                "http://127.0.0.1:8080/index.html"]}
        r = run_cli("purge", "--all", "--config", str(conf), env={"CF_TOKEN": "t"})
        assert r.returncode == 0 and api.seen[-1].json() == {"purge_everything": True}
        api.script.append(TestCloudflare.denied)
        r = run_cli("purge", "--all", "--config", str(conf), env={"CF_TOKEN": "t"})
        assert r.returncode == 9  # PurgeError (7 is LogFormatError)
        assert r.stderr.startswith("difusor: la purga no quedó comprobada en: cf")
        assert "permiso" in r.stdout
