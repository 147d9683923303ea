"""The install is the lock: uv.lock is current with pyproject.toml, the venv equals it, and the
warnings policy fails the suite on difusor's own deprecated usage but not on a dependency's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"


def uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    if not UV.exists():
        pytest.skip("uv no está en este entorno (instalado sin `make install`)")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": sys.prefix, "UV_PYTHON_DOWNLOADS": "never"}
    return subprocess.run([str(UV), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_is_current_with_pyproject() -> None:
    result = uv("lock", "--check")
    assert result.returncode == 0, result.stderr


def test_lock_check_fails_when_pyproject_asks_for_something_else(tmp_path: Path) -> None:
    # The check above can fail: a project whose pyproject no longer matches its lock is refused.
    pyproject = (ROOT / "pyproject.toml").read_text()
    stale = pyproject.replace("dependencies = [\n", 'dependencies = [\n    "six",\n', 1)
    (tmp_path / "pyproject.toml").write_text(stale)
    (tmp_path / "uv.lock").write_text((ROOT / "uv.lock").read_text())
    # Online: offline, uv can only re-resolve from what its cache holds, and a fresh machine's
    # cache lacks the wheels of other platforms and Pythons the lock covers.
    result = uv("lock", "--check", cwd=tmp_path)
    assert result.returncode != 0 and "needs to be updated" in result.stderr, result.stderr


def test_venv_equals_the_lock() -> None:
    locked: dict[str, set[str]] = {}
    for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]:
        locked.setdefault(normalized(package["name"]), set()).add(package.get("version", ""))
    installed = {normalized(d.metadata["Name"]): d.version for d in metadata.distributions()}
    assert {name: version for name, version in installed.items()
            if version not in locked.get(name, set())} == {}
    # ...and nothing the lock asks for on this platform is missing or different (uv's own check).
    result = uv("sync", "--locked", "--extra", "test", "--check")
    assert result.returncode == 0, result.stderr


PROBE = '''
import warnings

def warn_from(module: str, category: type[Warning]) -> None:
    # A warning is attributed to the module whose code called warnings.warn (stacklevel=1).
    exec("import warnings\\nwarnings.warn('vieja API', CATEGORY)", {"__name__": module, "CATEGORY": category})

def test_probe() -> None:
    warn_from(MODULE, CATEGORY)
'''


@pytest.mark.parametrize(("module", "category", "fails"), [
    ("difusor.publish.activate", "DeprecationWarning", True),
    ("difusor.receive.sftp", "PendingDeprecationWarning", True),
    ("test_something", "DeprecationWarning", True),
    ("difusor.receive.sftp", "__import__('cryptography.utils').utils.CryptographyDeprecationWarning", True),
    ("difusor.receive.sftp", "UserWarning", True),
    ("asyncssh.crypto.misc", "__import__('cryptography.utils').utils.CryptographyDeprecationWarning", False),
    ("botocore.client", "DeprecationWarning", False),
    ("pydantic.main", "PendingDeprecationWarning", False),
    ("somelib", "RuntimeWarning", True),  # not a deprecation: still an error wherever it comes from
])
@pytest.mark.slow
def test_warnings_policy(tmp_path: Path, module: str, category: str, fails: bool) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text(f"MODULE = {module!r}\nCATEGORY = {category}\n" + PROBE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), str(probe)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (result.returncode == 1) is fails, result.stdout[-2000:]
    assert result.returncode in (0, 1), result.stdout[-2000:]
