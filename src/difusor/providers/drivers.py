"""A family's driver table: provider name → ``"module:Class"``, imported when first asked for.

Every provider family (CDN purgers, origins, enforcement points) names its drivers in one
``DriverTable`` in its ``base``; an SDK is imported only when its driver is configured, and an
unknown name fails with the list of known ones, in the family's own words.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Generic, TypeVar

from difusor.errors import ConfigError

T = TypeVar("T")


class DriverTable(Generic[T]):
    def __init__(self, drivers: Mapping[str, str], *, unknown: str) -> None:
        """``unknown``: the Spanish line for a name not in the table, with ``{name}`` and
        ``{known}`` (the known names, comma-separated, in table order)."""
        self.drivers = dict(drivers)
        self.unknown = unknown

    def names(self) -> list[str]:
        return list(self.drivers)

    def load(self, name: str) -> type[T]:
        """The driver class for ``name``, imported now (and only now)."""
        try:
            target = self.drivers[name]
        except KeyError:
            raise ConfigError(self.unknown.format(name=name, known=", ".join(self.drivers))
                              ) from None
        module, _, attr = target.partition(":")
        cls: type[T] = getattr(importlib.import_module(module), attr)
        return cls
