"""Amazon CloudFront, through boto3: ``create_invalidation``.

``POST /2020-05-31/distribution/{id}/invalidation`` with an XML ``InvalidationBatch`` of paths
(``/json/main.json``), signed with AWS SigV4. CloudFront allows 3,000 individual paths in progress
per distribution, so one invalidation carries up to 3,000 and a larger change becomes a single
``/*`` (one wildcard path). Credentials: ``token_env`` may name a variable holding
``ACCESS_KEY_ID:SECRET_ACCESS_KEY``; otherwise boto3's usual chain (environment,
``~/.aws/credentials``, the instance's role). ``api_url`` is boto3's ``endpoint_url``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from difusor.config import CloudFrontCdnSettings, Config
from difusor.errors import ConfigError
from difusor.providers import env_secret, retry_after, url_path
from difusor.publish.cdn.base import PurgeError, Purger, RateLimited, Unavailable

_THROTTLED = {"Throttling", "ThrottlingException", "TooManyInvalidationsInProgress",
              "RequestLimitExceeded"}


class CloudFrontPurger(Purger):
    kind = "cloudfront"
    default_batch = 3000
    max_batch = 3000
    settings: CloudFrontCdnSettings

    def __init__(self, settings: CloudFrontCdnSettings, *, keys: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        session = boto3.session.Session(**(keys or {}))
        self.client = session.client(
            "cloudfront", endpoint_url=settings.api_url or None, region_name="us-east-1",
            config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"},
                              connect_timeout=settings.timeout, read_timeout=settings.timeout),
        )

    @classmethod
    def from_config(cls, cfg: Config, settings: CloudFrontCdnSettings,  # type: ignore[override]
                    env: Mapping[str, str]) -> Purger:
        """The keys from ``token_env`` (``ACCESS_KEY_ID:SECRET_ACCESS_KEY``), or boto3's chain."""
        secret = env_secret(env, settings.token_env)
        if not secret:
            return cls(settings, site_url=cfg.site.url)
        key_id, sep, key = secret.partition(":")
        if not sep or not key_id or not key:
            raise ConfigError(f"[[cdn]] «{settings.label}»: la variable {settings.token_env} debe "
                              "tener la forma ACCESS_KEY_ID:SECRET_ACCESS_KEY")
        return cls(settings, site_url=cfg.site.url, secret=secret,
                   keys={"aws_access_key_id": key_id, "aws_secret_access_key": key})

    def targets(self, urls: list[str]) -> list[str]:
        return [url_path(u) for u in urls]

    def batches(self, targets: list[str]) -> list[list[str]]:
        if len(targets) > self.max_batch:
            return [["/*"]]  # more than CloudFront keeps in progress: one wildcard instead
        return super().batches(targets)

    def _send(self, batch: list[str]) -> str | None:
        return self._invalidate(batch)

    def _send_all(self) -> str | None:
        return self._invalidate(["/*"])

    def _invalidate(self, paths: list[str]) -> str | None:
        reference = f"difusor-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        try:
            answer = self.client.create_invalidation(
                DistributionId=self.settings.distribution_id,
                InvalidationBatch={"Paths": {"Quantity": len(paths), "Items": paths},
                                   "CallerReference": reference},
            )
        except NoCredentialsError:
            raise PurgeError("no hay credenciales de AWS: define token_env o las variables "
                             "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY") from None
        except ClientError as exc:
            raise _mapped(exc, self.settings.distribution_id) from None
        except BotoCoreError as exc:
            raise Unavailable(f"no pude hablar con CloudFront: {exc}") from None
        return str(answer["Invalidation"]["Id"])

    def close(self) -> None:
        self.client.close()


def _mapped(exc: ClientError, distribution: str) -> PurgeError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", ""))
    meta = exc.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode", 0) or 0)
    if code in _THROTTLED or status == 429:
        return RateLimited(f"CloudFront limitó las invalidaciones ({code}: {message})",
                           retry_after(meta.get("HTTPHeaders", {}).get("retry-after")))
    if code in ("AccessDenied", "InvalidClientTokenId", "SignatureDoesNotMatch"):
        return PurgeError(f"AWS rechazó las credenciales ({code}): ¿la política IAM permite "
                          "cloudfront:CreateInvalidation sobre esta distribución?")
    if code == "NoSuchDistribution":
        return PurgeError(f"CloudFront no conoce la distribución {distribution}: revisa "
                          "distribution_id")
    if status >= 500:
        return Unavailable(f"CloudFront respondió {status} ({code})")
    return PurgeError(f"CloudFront rechazó la invalidación ({code}: {message})")
