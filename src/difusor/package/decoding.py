"""Decoding what a package states in text: JSON and UTF-8, refused in Spanish when invalid."""

from __future__ import annotations

import json
import sys

from difusor.errors import PackageRefused


def parse_json(path: str, data: bytes) -> object:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise PackageRefused("json_invalid", f"«{path}» no está en UTF-8") from None
    except json.JSONDecodeError as exc:
        raise PackageRefused(
            "json_invalid",
            f"«{path}» no es JSON válido (línea {exc.lineno}, columna {exc.colno}: {exc.msg})",
        ) from None
    except RecursionError:
        raise PackageRefused(
            "json_too_deep",
            f"«{path}» trae listas u objetos anidados a más de unos {sys.getrecursionlimit()} niveles; "
            "ningún sitio PREP los necesita",
        ) from None
    except ValueError:  # the only other one json raises: an integer past Python's digit limit
        raise PackageRefused(
            "json_number",
            f"«{path}» trae un número entero de más de {sys.get_int_max_str_digits()} cifras",
        ) from None


def utf8_text(path: str, data: bytes) -> str:
    """A checksum listing's text."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PackageRefused("checksum_format", f"«{path}» no está en UTF-8") from None
