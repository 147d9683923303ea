"""``difusor init``, ``sftp-config``, ``nginx-config``: a new site's folder and the configuration
of the programs in front of it (OpenSSH, nginx)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from difusor import config as config_mod
from difusor.cli.kit import DEFAULT_CONFIG, ConfigOpt, err, ledger_for, out
from difusor.errors import DifusorError
from difusor.moments import BadMoment, parse_moment
from difusor.paths import StateLayout, private_dir


def init(
    directory: Annotated[Path, typer.Argument(help="Carpeta donde crear difusor.toml y el estado.")],
    web_listen: Annotated[str, typer.Option(help="HOST:PUERTO del servidor web.")] = "127.0.0.1:8080",
    sftp_listen: Annotated[str, typer.Option(help="HOST:PUERTO del SFTP.")] = "127.0.0.1:2222",
    authorized_key: Annotated[
        Path | None, typer.Option(help="Llave pública de la autoridad (se copia).")
    ] = None,
    name: Annotated[str, typer.Option(help="Nombre del sitio.")] = "PREP",
    force: Annotated[bool, typer.Option(help="Reemplazar un difusor.toml existente.")] = False,
    self_signed_tls: Annotated[bool, typer.Option(
        "--self-signed-tls", help="Crear un certificado autofirmado de desarrollo "
        "(keys/tls.crt, keys/tls.key) y servir por HTTPS.")] = False,
    allow_from: Annotated[list[str] | None, typer.Option(
        "--allow-from", metavar="CIDR", help="Red de la autoridad desde la que se acepta el SFTP "
        "(repetible); sin ella, cualquier IP puede intentarlo.")] = None,
    operation_end: Annotated[str, typer.Option(
        "--operation-end", metavar="FECHA", help="Fin de la operación, dd/mm/aaaa HH:MM o ISO "
        "8601 (en la zona del sitio si no la lleva).")] = "",
    test_url: Annotated[str, typer.Option(
        "--test-url", metavar="URL", help="URL del sitio de prueba (convocatoria III.2.h); con "
        "--official-url, dos sitios. En una terminal se pregunta.")] = "",
    official_url: Annotated[str, typer.Option(
        "--official-url", metavar="URL", help="URL del sitio oficial.")] = "",
    operation_start: Annotated[str, typer.Option(
        "--operation-start", metavar="FECHA", help="Inicio de la publicación oficial: desde ahí "
        "los paquetes van al sitio oficial.")] = "",
    simulacro: Annotated[list[str] | None, typer.Option(
        "--simulacro", metavar="INICIO,FIN", help="Ventana de un simulacro (repetible), p. ej. "
        "«01/12/2024 09:00,01/12/2024 14:00»: sus paquetes van al sitio de prueba.")] = None,
) -> None:
    """Crea DIRECTORY/difusor.toml y las carpetas de estado (con --test-url y --official-url, el
    sitio de prueba y el oficial; con --operation-start y --simulacro, el calendario)."""
    target = directory / config_mod.DEFAULT_CONFIG
    if target.exists() and not force:
        raise DifusorError(f"{target} ya existe; usa --force para reemplazarlo")
    tls = ("keys/tls.crt", "keys/tls.key") if self_signed_tls else ("", "")
    networks = [_network(n) for n in allow_from or []]
    end = _moment_option(operation_end, "--operation-end") if operation_end else ""
    start = _moment_option(operation_start, "--operation-start") if operation_start else ""
    windows = [_window(n, w) for n, w in enumerate(simulacro or [], 1)]
    try:
        text = config_mod.render_default(web_listen=web_listen, sftp_listen=sftp_listen, name=name,
                                         tls_cert=tls[0], tls_key=tls[1], allow_from=networks,
                                         operation_end=end, operation_start=start,
                                         simulacros=windows, sites=_sites(test_url, official_url))
    except ValueError as exc:
        raise DifusorError(f"dirección inválida: {exc}") from None
    if authorized_key is not None and not authorized_key.is_file():
        raise DifusorError(f"no existe la llave pública {authorized_key}")
    directory.mkdir(parents=True, exist_ok=True)
    keys = private_dir(directory / "keys")  # 0700 whatever the umask: SSH and TLS keys
    auth = keys / "authorized_keys"
    if authorized_key is not None:
        shutil.copyfile(authorized_key, auth)
    elif not auth.exists():
        auth.write_text("")
    auth.chmod(0o600)
    if self_signed_tls:
        from difusor.serve.selfsigned import write_self_signed

        write_self_signed(directory / tls[0], directory / tls[1],
                          [config_mod.parse_address(web_listen)[0]])
    _write_private(target, text)
    cfg = config_mod.load(target)
    StateLayout(cfg.state_dir).create()
    ledger_for(cfg).close()
    from difusor.integrity.signing import fingerprint, key_path, load_or_create, public_b64

    signing = load_or_create(key_path(cfg))  # the chain's key: its fingerprint goes in the kit
    out.print(f"Listo: {target}")
    out.print(f"  estado en {cfg.state_dir}")
    for site_name, entry in cfg.sites.items():
        out.print(f"  sitio {site_name} ({entry.role}): {entry.url}", markup=False)
    if self_signed_tls:
        out.print(f"  HTTPS con certificado autofirmado de desarrollo: {directory / tls[0]} "
                  "(90 días; en producción, uno de una CA: docs/nginx.md)")
    out.print(f"  llave de la cadena pública de cortes: {key_path(cfg)} "
              f"({fingerprint(public_b64(signing))})", markup=False)
    out.print(f"  siguiente paso: difusor publish PAQUETE --config {target}")


def _sites(test_url: str, official_url: str) -> dict[str, config_mod.SiteEntry]:
    """The convocatoria's two URLs: asked for at a terminal, both or neither."""
    if not (test_url or official_url) and sys.stdin.isatty():
        test_url = typer.prompt("URL del sitio de prueba (vacío = un solo sitio)", default="",
                                show_default=False)
        if test_url:
            official_url = typer.prompt("URL del sitio oficial")
    if not (test_url or official_url):
        return {}
    if not (test_url and official_url):
        raise typer.BadParameter("el sitio de prueba y el oficial van juntos: da --test-url y "
                                 "--official-url", param_hint="--test-url")
    urls = {"prueba": (test_url, "--test-url"), "oficial": (official_url, "--official-url")}
    for url, option in urls.values():
        try:
            config_mod.check_url(url)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=option) from None
    return {role: config_mod.SiteEntry(role=role, url=url) for role, (url, _) in urls.items()}


def _window(n: int, value: str) -> config_mod.SimulacroWindow:
    start, sep, end = value.partition(",")
    if not sep:
        raise typer.BadParameter(f"«{value}»: INICIO,FIN", param_hint="--simulacro")
    return config_mod.SimulacroWindow(
        name=f"Simulacro {n}", start=_moment_option(start.strip(), "--simulacro"),
        end=_moment_option(end.strip(), "--simulacro"))


def _network(value: str) -> str:
    try:
        return config_mod.check_network(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--allow-from") from None


def _moment_option(value: str, option: str) -> str:
    """ISO 8601 in the default site zone; a bad date is a usage error (exit 64), like a bad
    ``--allow-from``."""
    zone = ZoneInfo(config_mod.SiteSettings().timezone)
    try:
        return parse_moment(value, zone).isoformat()
    except BadMoment as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _write_private(path: Path, text: str) -> None:
    """The config names secrets' variables and the authority's networks: 0600, any umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(fd, 0o600)  # an existing file (--force) keeps its old mode otherwise
        f.write(text)


def sftp_config(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Archivo donde escribir el bloque de sshd (p. ej. "
        "/etc/ssh/sshd_config.d/difusor-sftp.conf); por omisión, la salida estándar.")] = None,
    chroot: Annotated[Path | None, typer.Option(
        help="Raíz (chroot) de la cuenta SFTP; la autoridad sube a CHROOT/entrada "
        "[por omisión /srv/difusor/sftp].")] = None,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Crear carpetas, permisos y llaves (requiere root).")] = False,
    create_user: Annotated[bool, typer.Option(
        "--create-user", help="Con --apply: crear la cuenta de la autoridad si no existe.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Configura OpenSSH (internal-sftp encerrado en un chroot) como receptor de producción."""
    from difusor.receive.openssh import SftpAccount

    cfg = config_mod.load(config)
    account = SftpAccount.from_config(cfg, chroot=chroot)
    block = account.match_block()
    if apply:
        for step in account.apply(create_user=create_user):
            err.print(f"hecho: {step.shell}", markup=False)
    if output is None:
        out.print(block, markup=False, end="")
    else:
        _write(output, block)
    err.print(account.instructions(snippet=output, applied=apply, create_user=create_user),
              markup=False, end="", soft_wrap=True)


def nginx_config(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Archivo donde escribir la configuración (p. ej. "
        "/etc/nginx/conf.d/difusor.conf); por omisión, la salida estándar.")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Configuración de nginx con la misma política de encabezados que el servidor embebido."""
    from difusor.serve.nginxconf import NginxConfig

    cfg = config_mod.load(config)
    conf = NginxConfig.from_config(cfg)
    text = conf.render()
    if output is None:
        sys.stdout.write(text)  # verbatim: no console markup, emoji codes or wrapping
        sys.stdout.flush()
    else:
        _write(output, text)
    err.print(conf.instructions(output), markup=False, end="", soft_wrap=True)


def _write(output: Path, text: str) -> None:
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DifusorError(f"no puedo escribir {output}: {exc.strerror}") from None
