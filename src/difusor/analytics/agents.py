"""Who is asking: browser, operating system, device class and whether it is a robot.

ua-parser gives the browser and OS families and a device family (``Spider`` for known
crawlers); the device class is read from those and from the usual user-agent tokens. A robot
is what ua-parser calls a Spider, an agent carrying a common crawler/tool marker, or an empty
agent (browsers always send one). Logs repeat a few thousand agents millions of times, so
answers are cached per distinct agent.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

# Crawler and tool markers, matched in the lower-cased agent. Plain substrings are tested with
# ``in`` (a case-insensitive regex alternation of sixty words costs ~130 µs per agent, the
# substring scan a few); only the markers that need a word boundary go through a regex.
BOT_SUBSTRINGS = (
    "bot/", "bot;", "crawl", "spider", "slurp", "scrap", "curl/", "wget/", "python-requests",
    "python-urllib", "aiohttp", "httpx", "go-http-client", "java/", "okhttp", "libwww", "lwp::",
    "headlesschrome", "phantomjs", "puppeteer", "playwright", "selenium", "facebookexternalhit",
    "whatsapp", "preview", "monitor", "pingdom", "uptime", "check_http", "nagios", "zabbix",
    "apache-httpclient", "axios/", "node-fetch", "undici", "postman", "insomnia", "httpie",
    "apachebench", "siege", "jmeter", "locust", "masscan", "nmap", "zgrab", "nikto", "sqlmap",
    "scanner", "feedfetcher", "mediapartners", "lighthouse", "gtmetrix", "archiver", "validator",
)
_BOT_WORDS = re.compile(r"(?<!cu)bot\b|\bwrk\b|\bab/|\bk6/")
_WORD_HINTS = ("bot", "wrk", "ab/", "k6/")


def bot_marker(text: str) -> bool:
    """Whether the agent carries a common crawler/tool marker ("CUBOT" phones do not)."""
    low = text.lower()
    for marker in BOT_SUBSTRINGS:
        if marker in low:
            return True
    return any(h in low for h in _WORD_HINTS) and _BOT_WORDS.search(low) is not None


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


@lru_cache(maxsize=100_000)
def classify(ua: str) -> Agent:
    import ua_parser

    text = ua.strip()
    if not text or text == "-":
        return Agent("Otro", "Otro", "bot", True)
    try:
        parsed = ua_parser.parse(text)
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
