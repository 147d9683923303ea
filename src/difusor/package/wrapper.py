"""The package's own wrapping folder, stripped from every path; never a folder of the site."""

from __future__ import annotations

import re
from collections.abc import Collection
from fnmatch import fnmatchcase

from difusor.config import PackageSettings
from difusor.package import checksums

_STAMP_WRAPPER = re.compile(r"^\d{8}_\d{4}")
_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")


def wrapper_folder(name: str, paths: Collection[str], site_folders: Collection[str],
                   s: PackageSettings) -> str | None:
    """The single top folder of ``paths`` when it is the package's wrapper: named like the
    archive ``name``, like ``YYYYMMDD_HHMM_…``, or like ``package.wrapper_names``."""
    tops = {p.split("/", 1)[0] for p in paths}
    loose = {p for p in paths if "/" not in p}
    folders = tops - loose
    # A checksum list may sit beside the wrapper folder instead of inside it.
    if len(folders) != 1 or loose - set(checksums.INNER_NAMES):
        return None
    top = next(iter(folders))
    if top in site_folders or s.main_json in paths:
        return None  # a folder of the site itself, e.g. json/ of an incremental package
    stem = name
    for suffix in _SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if top == stem or _STAMP_WRAPPER.match(top):
        return top
    if any(fnmatchcase(top, pattern) for pattern in s.wrapper_names):
        return top
    return None
