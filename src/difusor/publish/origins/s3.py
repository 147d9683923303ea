"""An S3-compatible bucket (AWS, MinIO, Ceph, R2, …) through boto3.

A bucket has no symlink to swap, so ``json/main.json`` is the pointer: staging uploads every
object that is new or changed since the corte the bucket holds (with its ``Content-Type`` and the
header policy's ``Cache-Control``), switching uploads ``main.json`` last, then the marker
``_difusor/release.json`` and finally deletes what the new corte no longer has. Files whose bytes
changed are visible under their names from staging on; what readers follow, ``main.json``, moves
in one PUT. Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance role), never from difusor.toml.

The marker says ``{"release": <what main.json is>}``; before staging overwrites anything it also
says ``"dirty": <the corte being uploaded>``. So a staging cut short is known, and the next
staging (of any corte, the live one again included) sends every path where either may differ.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from difusor.config import S3OriginSettings
from difusor.headers import MAIN_JSON_CACHE_CONTROL, HeaderPolicy
from difusor.publish.origins.base import Context, Origin, OriginError, Release
from difusor.store.manifest import FileEntry, Manifest

MARKER = "_difusor/release.json"
UPLOAD_THREADS = 8


class S3Origin(Origin):
    kind = "s3"
    stages_in_place = True
    settings: S3OriginSettings

    def __init__(self, settings: S3OriginSettings, ctx: Context) -> None:
        super().__init__(settings, ctx)
        self.bucket = settings.bucket
        self.prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        self.policy = HeaderPolicy.from_config(ctx.cfg)
        self.main = ctx.cfg.package.main_json
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.settings.endpoint_url or None,
                region_name=self.settings.region or None,
                config=BotoConfig(connect_timeout=min(self.timeout, 10.0),
                                  read_timeout=self.timeout,
                                  retries={"max_attempts": 1},  # difusor retries, once
                                  max_pool_connections=UPLOAD_THREADS * 2),
            )
        return self._client

    def key(self, path: str) -> str:
        return self.prefix + path

    # -- the two phases -------------------------------------------------------------------

    def _stage(self, release: Release) -> dict[str, Any]:
        marker = self._marker()
        held = self._manifests(marker)  # what the bucket may hold: its corte, a staging cut short
        todo = [(p, e) for p, e in release.manifest.files.items()
                if p != self.main and (held is None or any(m.files.get(p) != e for m in held))]
        if todo:  # say first that the bucket is being changed, so recovery can repair it
            self._write_marker({"release": marker.get("release"), "dirty": release.id})
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            list(pool.map(lambda item: self._put(*item), todo))
        return {"files_sent": len(todo), "bytes_sent": sum(e.size for _, e in todo),
                "base": marker.get("release")}

    def _switch(self, release_id: str) -> dict[str, Any]:
        manifest = self.ctx.manifests.load(release_id)
        held = self._manifests(self._marker())
        entry = manifest.files.get(self.main)
        if entry is not None:
            self._put(self.main, entry)  # the pointer flip
        self._write_marker({"release": release_id, "corte": manifest.corte_time})
        removed = self._removed(manifest, held)
        for start in range(0, len(removed), 1000):
            self._call("delete_objects", Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in removed[start:start + 1000]], "Quiet": True})
        return {"removed": len(removed)}

    def live(self) -> str | None:
        release = self._marker().get("release")
        return str(release) if release else None

    # -- helpers --------------------------------------------------------------------------

    def _marker(self) -> dict[str, Any]:
        """``{"release": what main.json is, "dirty": a corte whose staging began}``."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(MARKER))["Body"].read()
            doc = json.loads(body)
            return doc if isinstance(doc, dict) else {}
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return {}
            raise OriginError(self._hint(exc)) from exc
        except BotoCoreError as exc:
            raise OriginError(self._hint(exc)) from exc
        except ValueError:
            return {}

    def _write_marker(self, doc: dict[str, Any]) -> None:
        self._call("put_object", Bucket=self.bucket, Key=self.key(MARKER),
                   Body=json.dumps(doc).encode(), ContentType="application/json",
                   CacheControl=MAIN_JSON_CACHE_CONTROL)

    def _manifests(self, marker: dict[str, Any]) -> list[Manifest] | None:
        """The manifests of every corte the bucket's files may come from; None when one of
        them is unknown (never staged here, or collected): then everything is sent."""
        ids = {str(marker[k]) for k in ("release", "dirty") if marker.get(k)}
        if not ids or not all(self.ctx.manifests.exists(i) for i in ids):
            return None
        return [self.ctx.manifests.load(i) for i in sorted(ids)]

    def _removed(self, manifest: Manifest, held: list[Manifest] | None) -> list[str]:
        if held is not None:
            return sorted({self.key(p) for m in held for p in m.files if p not in manifest.files})
        keep = {self.key(p) for p in manifest.files} | {self.key(MARKER)}
        gone: list[str] = []  # what the bucket held is unknown: list what is there
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        try:
            for page in pages:
                gone += [o["Key"] for o in page.get("Contents", []) if o["Key"] not in keep]
        except (BotoCoreError, ClientError) as exc:
            raise OriginError(self._hint(exc)) from exc
        return gone

    def _put(self, path: str, entry: FileEntry) -> None:
        headers = dict((k.lower(), v) for k, v in self.policy.headers_for(path))
        extra = {"CacheControl": headers["cache-control"]} if "cache-control" in headers else {}
        try:  # streamed from the loose object (materialised before staging)
            body: Any = open(self.ctx.objects.where(entry.sha256), "rb")  # noqa: SIM115
        except FileNotFoundError:
            body = io.BytesIO(self.ctx.objects.read(entry.sha256))  # still in its pack
        with body:
            self._call("put_object", Bucket=self.bucket, Key=self.key(path), Body=body,
                       ContentType=entry.media_type, ContentLength=entry.size,
                       Metadata={"sha256": entry.sha256}, **extra)

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise OriginError(self._hint(exc)) from exc

    def _hint(self, exc: Exception) -> str:
        text = f"origen {self.name} (s3://{self.bucket}/{self.prefix}): {exc}"
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            text += (" (¿las credenciales de AWS_ACCESS_KEY_ID / AWS_PROFILE permiten "
                     "s3:PutObject, s3:GetObject y s3:DeleteObject en el bucket?)")
        elif code == "NoSuchBucket":
            text += " (¿existe el bucket, en esa región o endpoint_url?)"
        elif isinstance(exc, BotoCoreError):
            text += " (¿endpoint_url y la red al servicio S3 están bien?)"
        return text
