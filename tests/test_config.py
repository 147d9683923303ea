"""difusor.toml: defaults, and a clear Spanish line for every mistake an operator makes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from difusor import config as config_mod
from difusor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, keys: bool = True) -> Path:
    if keys:
        (tmp_path / "keys").mkdir(exist_ok=True)
        (tmp_path / "keys" / "authorized_keys").write_text("")
    path = tmp_path / "difusor.toml"
    path.write_text(text)
    return path


def test_init_template_loads_with_contract_values(tmp_path: Path) -> None:
    cfg = config_mod.load(write(tmp_path, config_mod.render_default(web_listen="127.0.0.1:9000")))
    assert cfg.web.listen == "127.0.0.1:9000"
    assert cfg.site.timezone == "America/Mexico_City"
    assert cfg.sftp.user == "iem"
    assert cfg.state_dir == tmp_path / "state"  # relative to the file's folder


def test_empty_file_means_all_defaults(tmp_path: Path) -> None:
    cfg = config_mod.load(write(tmp_path, ""))
    assert cfg.web.workers == 2 and cfg.package.main_json == "json/main.json"


@pytest.mark.parametrize(("text", "expected"), [
    ("[web]\nlisen = '127.0.0.1:1'\n",
     r"clave desconocida «lisen» en \[web\] \(¿quisiste decir «listen»\?\)"),
    ("[webb]\n", r"sección desconocida \[webb\] \(¿quisiste decir «web»\?\)"),
    ("[web]\nlisten = 'localhost'\n", r"web\.listen: «localhost» no es una dirección HOST:PUERTO"),
    ("[web]\nlisten = '127.0.0.1:70000'\n", r"web\.listen: el puerto 70000 está fuera de 1–65535"),
    ("[web]\nlisten = 'no valido:80'\n", r"web\.listen: «no valido» no es una IP ni un nombre de host"),
    ("[sftp]\nlisten = '[::1]:x'\n", r"sftp\.listen"),
    ("[web]\nworkers = 'dos'\n", r"web\.workers: se esperaba un número entero"),
    ("[web]\nworkers = 0\n", r"web\.workers: debe ser ≥ 1"),
    ("[package]\nkind = 'parcial'\n", r"package\.kind: valor «parcial» no permitido"),
    ("[site]\ntimezone = 'Mars/Olympus'\n", r"site\.timezone: zona horaria desconocida"),
    ("[site]\nurl = 'ftp://x'\n", r"site\.url: «ftp://x» no es una URL"),
    ("[corte]\njson_pointers = ['json/main.json']\n", r"debe tener la forma ruta#/puntero"),
    ("[web\n", r"no es TOML válido"),
    ("[[headers]]\nmatch = 'json/main.json'\nset = { 'cache-control' = 'max-age=60' }\n",
     r"cambiaría Cache-Control de /json/main.json"),
    ("[[headers]]\nmatch = '*'\nsett = {}\n",
     r"clave desconocida «sett» en \[\[headers\]\] n\.º 1 \(¿quisiste decir «set»\?\)"),
    # A header a server cannot send is refused here, not dropped (or split) while serving.
    ("[[headers]]\nmatch = '*'\nset = { 'X-Aviso' = \"a\\r\\nSet-Cookie: x=1\" }\n",
     r"headers\.0\.set: el valor de «X-Aviso» lleva un salto de línea"),
    ("[[headers]]\nmatch = '*'\nset = { 'X-Aviso' = \"a\\nb\" }\n", r"salto de línea"),
    ("[[headers]]\nmatch = '*'\nset = { 'X Aviso' = 'a' }\n",
     r"«X Aviso» no es un nombre de encabezado HTTP válido"),
    ("[monitor]\nlisten = '9100'\n", r"monitor\.listen: «9100» no es una dirección HOST:PUERTO"),
])
def test_mistakes_are_named_in_spanish(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_mod.load(write(tmp_path, text))
    assert re.search(expected, err.value.message), err.value.message
    assert "\n" not in err.value.message
    assert err.value.exit_code == 3


def test_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no encuentro .*difusor init"):
        config_mod.load(tmp_path / "nada.toml")
    with pytest.raises(ConfigError, match=r"sftp\.authorized_keys apunta a .* que no existe"):
        config_mod.load(write(tmp_path, "", keys=False))


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuracion.md").read_text()
    section = doc.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert section == config_mod.settings_reference(), "docs/configuracion.md desactualizado: make docs"


def test_headers_with_tabs_and_an_empty_monitor_listen_are_fine(tmp_path: Path) -> None:
    cfg = config_mod.load(write(tmp_path, "[[headers]]\nmatch = '*'\nset = { 'X-A' = \"a\\tb\" }"
                                          "\n[monitor]\nlisten = ''\n"))
    assert cfg.headers[0].set == {"X-A": "a\tb"} and cfg.monitor.listen == ""


def test_init_template_carries_allow_from_and_operation_end(tmp_path: Path) -> None:
    text = config_mod.render_default(allow_from=["200.23.8.0/24"],
                                     operation_end="2024-12-09T20:00:00-06:00")
    cfg = config_mod.load(write(tmp_path, text))
    assert cfg.sftp.allow_from == ["200.23.8.0/24"]
    assert cfg.operation.end == "2024-12-09T20:00:00-06:00"
    with pytest.raises(ValueError, match="no es una red CIDR"):
        config_mod.render_default(allow_from=["200.23.8"])
    # Without an end, a commented example: callers may append their own [operation].
    appended = config_mod.render_default() + '[operation]\nend = "2024-12-09T20:00:00-06:00"\n'
    assert config_mod.load(write(tmp_path, appended)).operation.end
