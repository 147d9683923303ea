"""nginx's string syntax: quoting, an include that may be missing, indentation, ``add_header``."""

from __future__ import annotations

from pathlib import Path


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def optional(path: Path) -> str:
    """``include`` fails when its file is missing, but not when a pattern matches nothing: the
    last character as a one-letter class (``bloqueos.con[f]``) lets nginx start before the shield
    writes the file the first time."""
    text = str(path.absolute())
    if any(c in text for c in "*?[]") or not text[-1:].isalnum():
        return text
    return f"{text[:-1]}[{text[-1]}]"


def indent(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.split("\n"))


def add_header(name: str, value: str) -> str:
    # Names and values were checked once, when the config was read ([[headers]]). nginx has no
    # escape for "$" in a string: it comes from a variable holding it (see http_level).
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "${difusor_dollar}")
    return f'add_header {name} "{text}" always;'
