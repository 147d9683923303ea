"""The console's accounts: ``state/console/users.json`` (0600), one Argon2id hash per user.

Argon2id (argon2-cffi, RFC 9106's second recommended profile: 64 MiB, 3 passes) makes a stolen
file expensive to guess from. A login for a name that does not exist still verifies a hash, so
the answer's timing does not say which names exist.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from difusor.errors import DifusorError
from difusor.paths import private_dir, write_private

HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=1)
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MIN_PASSWORD = 12
_DUMMY = HASHER.hash("una contraseña que nadie tiene")


class UserStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = -1
        self._known: set[str] = set()

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise DifusorError(f"no puedo leer las cuentas de la consola {self.path}: {exc}") from None
        return data.get("users", {}) if isinstance(data, dict) else {}

    def names(self) -> list[str]:
        return sorted(self._read())

    def exists(self, name: str) -> bool:
        """Asked on every request of a session (a removed user is out at once): the file is
        read again only when it changed."""
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if stamp != self._stamp:
            self._known, self._stamp = set(self._read()), stamp
        return name in self._known

    def add(self, name: str, password: str, *, replace: bool = False) -> None:
        if not NAME.match(name):
            raise DifusorError(f"«{name}» no sirve como usuario: minúsculas, dígitos, «.», «_» o "
                               "«-», hasta 32 caracteres")
        if len(password) < MIN_PASSWORD:
            raise DifusorError(f"la contraseña debe tener al menos {MIN_PASSWORD} caracteres")
        with self._lock:
            users = self._read()
            if name in users and not replace:
                raise DifusorError(f"el usuario «{name}» ya existe (usa --replace para cambiar su "
                                   "contraseña)")
            users[name] = {"hash": HASHER.hash(password),
                           "created": datetime.now(UTC).isoformat(timespec="seconds")}
            self._write(users)

    def remove(self, name: str) -> None:
        with self._lock:
            users = self._read()
            if users.pop(name, None) is None:
                raise DifusorError(f"no existe el usuario «{name}»")
            self._write(users)

    def verify(self, name: str, password: str) -> bool:
        stored = self._read().get(name, {}).get("hash")
        try:
            return HASHER.verify(stored or _DUMMY, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def _write(self, users: dict[str, dict[str, str]]) -> None:
        private_dir(self.path.parent)
        write_private(self.path, json.dumps({"users": users}, ensure_ascii=False,
                                            indent=1).encode())
