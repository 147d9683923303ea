"""The operator's documentation names every refusal code the code can produce."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def codes_in_source() -> set[str]:
    # Refusals are raised while reading packages: that is where their codes live.
    text = "\n".join(p.read_text() for p in (ROOT / "src" / "difusor").rglob("*.py")
                     if "package" in p.parts or p.name == "pipeline.py")
    codes = set(re.findall(r'PackageRefused\(\s*"([a-z_0-9]+)"', text))
    codes |= set(re.findall(r'"[a-z]+": \("([a-z_]+)", "[^"]+"\)', text))  # member-type table
    return codes


def test_every_refusal_code_is_documented() -> None:
    doc = (ROOT / "docs" / "paquetes.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", doc, flags=re.M))
    found = codes_in_source()
    assert len(found) >= 30
    assert found <= documented, f"sin documentar: {sorted(found - documented)}"
