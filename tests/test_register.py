"""``difusor register``: the registration kit from the configuration, never invented — every
III.2 field, the SFTP connection sheet with the host key's fingerprint, the service diagram and
the staff list; what is missing is listed with its key, and ``--check`` fails until it is not."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from difusor import config as config_mod
from difusor.report.registration import kit

COMPLETE = """
[registro]
institution = "Radio Irimbo, A.C."
entity = "Michoacán"
contact_name = "Ana Pérez"
contact_email = "ana@radio-irimbo.mx"
contact_phone = "443 555 0101"
work_phone = "443 555 0100"
work_extension = "214"
ips = ["203.0.113.10"]

[sites.prueba]
role = "prueba"
url = "https://prueba.radio-irimbo.mx"

[sites.oficial]
role = "oficial"
url = "https://prep.radio-irimbo.mx"

[[personal]]
name = "Ana Pérez"
role = "responsable técnica"
phone = "443 555 0101"
email = "ana@radio-irimbo.mx"

[[origins]]
name = "espejo-norte"
kind = "nginx"
root = "/srv/prep-espejo"
url = "https://norte.radio-irimbo.mx"

[[cdn]]
name = "borde-varnish"
kind = "varnish"
edge_url = "http://127.0.0.1:6081"

[monitor]
listen = "127.0.0.1:9100"

[[monitor.targets]]
name = "publico-cdn"
url = "https://prep.radio-irimbo.mx"
public = true
"""


def folder(tmp_path: Path, extra: str) -> Path:
    root = tmp_path / "difusor"
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "authorized_keys").write_text("")
    path = root / "difusor.toml"
    path.write_text(config_mod.render_default() + extra)
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", "register", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=120,
                          cwd=config.parent)


@pytest.mark.slow
def test_a_complete_config_gives_the_whole_kit(tmp_path: Path) -> None:
    config = folder(tmp_path, COMPLETE)
    assert cli(config, "--check").returncode == 0
    done = cli(config, "--output", str(tmp_path / "kit"))
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "kit" / "registro-difusor.html").read_text()
    for shown in ("Radio Irimbo, A.C.", "Michoacán", "ana@radio-irimbo.mx",
                  "443 555 0100 ext. 214", "203.0.113.10", "https://prueba.radio-irimbo.mx",
                  "https://prep.radio-irimbo.mx", "responsable técnica"):
        assert shown in html, shown
    assert 'class="falta"' not in html
    pdf = tmp_path / "kit" / "registro-difusor.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                              check=True).stdout
        assert "Radio Irimbo" in text and "203.0.113.10" in text


@pytest.mark.slow
def test_the_fingerprint_is_the_one_ssh_keygen_prints(tmp_path: Path) -> None:
    """The host key is made when the kit needs it (the authority needs its fingerprint before
    the first night), and the sheet states what ``ssh-keygen -lf`` states."""
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen no está instalado")
    config = folder(tmp_path, COMPLETE)
    cfg = config_mod.load(config)
    doc = json.loads(cli(config, "--json").stdout)
    key = cfg.path(cfg.sftp.host_key)
    assert key.is_file(), "register should create the embedded server's host key"
    listed = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True,
                            check=True).stdout.split()
    sheet = doc["sftp"]
    assert [k["huella"] for k in sheet["llaves"]] == [listed[1]]
    assert sheet["host"] == "203.0.113.10" and sheet["usuario"] == cfg.sftp.user
    assert sheet["puerto"] == config_mod.parse_address(cfg.sftp.listen)[1]
    chain = doc["integridad"]
    assert chain["huella"].startswith("SHA256:") and chain["cadenas"] == [
        "https://prueba.radio-irimbo.mx/_difusor/cortes.json",
        "https://prep.radio-irimbo.mx/_difusor/cortes.json"]
    html_kit = tmp_path / "kit"
    cli(config, "--output", str(html_kit))
    assert listed[1] in (html_kit / "registro-difusor.html").read_text()
    assert chain["huella"] in (html_kit / "registro-difusor.html").read_text()


@pytest.mark.slow
def test_an_incomplete_config_lists_what_is_missing_with_its_key(tmp_path: Path) -> None:
    config = folder(tmp_path, '[registro]\ninstitution = "Radio Irimbo"\nwork_phone = "443"\n')
    checked = cli(config, "--check")
    assert checked.returncode == 1
    for key in ("registro.entity", "registro.contact_email", "registro.ips",
                "registro.work_phone y registro.work_extension", "sites.prueba.url",
                "[[personal]]"):
        assert key in checked.stderr, key
    assert "registro.institution" not in checked.stderr
    assert not (config.parent / "registro").exists(), "--check writes nothing"
    written = cli(config, "--output", str(tmp_path / "kit"))
    assert written.returncode == 0  # the kit is still written, with the gaps marked
    html = (tmp_path / "kit" / "registro-difusor.html").read_text()
    assert html.count('class="falta"') >= 6 and "Radio Irimbo" in html


@pytest.mark.slow
def test_the_diagram_holds_every_configured_component(tmp_path: Path) -> None:
    config = folder(tmp_path, COMPLETE)
    cli(config, "--output", str(tmp_path / "kit"))
    html = (tmp_path / "kit" / "registro-difusor.html").read_text()
    svg = html[html.index("<svg"):html.index("</svg>")]
    words = "".join(re.findall(r">([^<]+)</text>", svg))  # long details wrap over lines
    cfg = config_mod.load(config)
    for name in ("SFTP embebido", "espejo-norte", "borde-varnish", "publico-cdn",
                 "Sondas remotas", cfg.sftp.listen, "https://prep.radio-irimbo.mx",
                 "https://prueba.radio-irimbo.mx"):
        assert name in words, name
    assert "/srv/prep-espejo" in words  # with its address, not just its name


def test_kit_never_invents_a_value(tmp_path: Path) -> None:
    cfg = config_mod.load(folder(tmp_path, ""))
    doc = kit(cfg)
    assert all(row["valor"] is None for row in doc["carta"][:7])
    assert doc["sftp"]["host"] is None and doc["personal"] == []
