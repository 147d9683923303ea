"""Who is asking: browser, operating system, device class and whether it is a robot.

ua-parser gives the browser and OS families and a device family (``Spider`` for known
crawlers); the device class is read from those and from the usual user-agent tokens. A robot
is what ua-parser calls a Spider, an agent carrying a common crawler/tool marker, or an empty
agent (browsers always send one). Logs repeat a few thousand agents millions of times, so
answers are cached per distinct agent.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from difusor.useragent import bot_marker

if TYPE_CHECKING:
    from ua_parser import Result

_DESKTOP_OS = {"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS",
               "ChromeOS", "FreeBSD", "OpenBSD", "NetBSD", "Solaris", "Arch Linux", "Mint",
               "macOS", "Gentoo", "SUSE", "Red Hat", "Mandriva", "Kubuntu"}
_MOBILE_OS = {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS",
              "Firefox OS", "Tizen", "HarmonyOS", "Sailfish"}


class Agent(NamedTuple):
    browser: str
    os: str
    device: str  # 'móvil' | 'escritorio' | 'tableta' | 'bot' | 'otro'
    bot: bool


@lru_cache(maxsize=1)
def _parser() -> Callable[[str], Result]:
    """ua-parser's default parser without its own cache in front (``classify`` caches whole
    answers; that cache cost a sixth of a lookup)."""
    import ua_parser

    parser = ua_parser.Parser(ua_parser.BestAvailableResolver(ua_parser.load_lazy_builtins()))
    return lambda text: parser(text, ua_parser.Domain.ALL).complete()


@lru_cache(maxsize=100_000)
def classify(ua: str) -> Agent:
    text = ua.strip()
    if not text or text == "-":
        return Agent("Otro", "Otro", "bot", True)
    try:
        parsed = _parser()(text)
    except Exception:  # a hostile string must not stop an ingest
        parsed = None
    browser = (parsed.user_agent.family if parsed and parsed.user_agent else None) or "Otro"
    os_family = (parsed.os.family if parsed and parsed.os else None) or "Otro"
    device = parsed.device if parsed else None
    if (device and device.family == "Spider") or bot_marker(text):
        return Agent(browser, os_family, "bot", True)
    return Agent(browser, os_family, _device_class(text, os_family, device), False)


def _device_class(text: str, os_family: str, device: object) -> str:
    family = getattr(device, "family", "") or ""
    brand = getattr(device, "brand", "") or ""
    low = text.lower()
    if ("ipad" in family.lower() or "tablet" in brand.lower() or "tablet" in low
            or "kindle" in low or "silk/" in low
            or (os_family == "Android" and "mobile" not in low)):
        return "tableta"
    if os_family in _MOBILE_OS or "mobi" in low or "iphone" in low:
        return "móvil"
    if os_family in _DESKTOP_OS or "windows nt" in low or "macintosh" in low or "x11" in low:
        return "escritorio"
    return "otro"
