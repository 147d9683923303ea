"""The operator's own words for section 9: ``memoria.md`` beside ``difusor.toml``.

The file is theirs: ``difusor report`` reads it and never creates or rewrites it. Markdown
(CommonMark plus tables) is rendered with raw HTML escaped and images turned off, so the
self-contained HTML stays free of scripts and of any request to the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from difusor.config import Config

FILENAME = "memoria.md"


def operator_path(cfg: Config) -> Path:
    """Where the operator writes their text: beside the configuration file."""
    return Path(cfg.root) / FILENAME


def operator_status(cfg: Config) -> dict[str, Any]:
    """``{archivo, existe}`` as the document's ``texto_operador`` states it."""
    path = operator_path(cfg)
    return {"archivo": str(path), "existe": path.is_file()}


def render_markdown(text: str) -> str:
    """Markdown → HTML fragment; raw HTML is shown as text, images are not fetched."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.disable("image")  # an image would be a request (or a local file) the HTML cannot hold
    # Headings inside the operator's text sit below the section's own (h2/h3).
    html = md.render(text)
    for level in range(6, 0, -1):
        new = min(level + 2, 6)
        html = html.replace(f"<h{level}>", f"<h{new}>").replace(f"</h{level}>", f"</h{new}>")
    return html


def operator_html(path: str | Path | None) -> str | None:
    """The rendered file, or None when it does not exist (the section then says how to add it)."""
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    return render_markdown(p.read_text(encoding="utf-8-sig"))
