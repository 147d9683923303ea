"""difusor.toml: every setting declared once, with its default, its check and its description.

The declaration is the single source for validation, for ``difusor init``'s file and for
``docs/configuracion.md`` (a test keeps the doc in step). Errors name the key in Spanish.

    values.py      the value types (HOST:PORT, URL, CIDR, ISO moment) and the section base
    site.py        [site] [web] [state] [store] [nginx] [[headers]]
    receive.py     [sftp] [receive] [dropfolder] [pull] [package] [corte]
    providers.py   [[origins]] and [[cdn]]: one model per kind, chosen by ``kind``
    operation.py   [monitor] [alerts] [operation]
    watch.py       [analytics] [shield]
    model.py       Config: the whole file
    loading.py     load / from_dict and the Spanish error lines
    template.py    render_default (``difusor init``) and settings_reference (the docs)
"""

from difusor.config.loading import from_dict, load
from difusor.config.model import LIST_SECTIONS, SECTIONS, Config
from difusor.config.operation import (
    AlertSettings,
    EmailSettings,
    MonitorSettings,
    MonitorTarget,
    OperationSettings,
    SimulacroWindow,
    WebhookSettings,
)
from difusor.config.providers import (
    AkamaiCdnSettings,
    CdnBase,
    CdnSettings,
    CloudflareCdnSettings,
    CloudFrontCdnSettings,
    FastlyCdnSettings,
    LocalOriginSettings,
    NginxOriginSettings,
    OriginBase,
    OriginSettings,
    S3OriginSettings,
    SshOriginSettings,
    VarnishCdnSettings,
)
from difusor.config.receive import (
    CorteSettings,
    DropFolderSettings,
    PackageSettings,
    PullSettings,
    ReceiveSettings,
    SftpSettings,
)
from difusor.config.site import (
    HeaderRule,
    NginxSettings,
    SiteSettings,
    StateSettings,
    StoreSettings,
    WebSettings,
)
from difusor.config.sites import FeedEntry, SiteEntry
from difusor.config.template import render_default, settings_reference
from difusor.config.values import (
    DEFAULT_CONFIG,
    MAIN_JSON,
    Address,
    Network,
    Url,
    check_address,
    check_end,
    check_network,
    check_url,
    parse_address,
)
from difusor.config.watch import (
    LOG_FORMATS,
    NFTABLES_FAMILIES,
    AnalyticsSettings,
    AnalyticsSource,
    CloudflareListSettings,
    LogFormat,
    ShieldSettings,
    nftables_set,
)
from difusor.headers import MAIN_JSON_CACHE_CONTROL

__all__ = [
    "DEFAULT_CONFIG",
    "LIST_SECTIONS",
    "LOG_FORMATS",
    "MAIN_JSON",
    "MAIN_JSON_CACHE_CONTROL",
    "NFTABLES_FAMILIES",
    "SECTIONS",
    "Address",
    "AkamaiCdnSettings",
    "AlertSettings",
    "AnalyticsSettings",
    "AnalyticsSource",
    "CdnBase",
    "CdnSettings",
    "CloudFrontCdnSettings",
    "CloudflareCdnSettings",
    "CloudflareListSettings",
    "Config",
    "CorteSettings",
    "DropFolderSettings",
    "EmailSettings",
    "FastlyCdnSettings",
    "FeedEntry",
    "HeaderRule",
    "LocalOriginSettings",
    "LogFormat",
    "MonitorSettings",
    "MonitorTarget",
    "Network",
    "NginxOriginSettings",
    "NginxSettings",
    "OperationSettings",
    "OriginBase",
    "OriginSettings",
    "PackageSettings",
    "PullSettings",
    "ReceiveSettings",
    "S3OriginSettings",
    "SftpSettings",
    "ShieldSettings",
    "SimulacroWindow",
    "SiteEntry",
    "SiteSettings",
    "SshOriginSettings",
    "StateSettings",
    "StoreSettings",
    "Url",
    "VarnishCdnSettings",
    "WebSettings",
    "WebhookSettings",
    "check_address",
    "check_end",
    "check_network",
    "check_url",
    "from_dict",
    "load",
    "nftables_set",
    "parse_address",
    "render_default",
    "settings_reference",
]
