"""II.1.c and II.1.d: free disk where the difusor writes, and the SFTP receiver — reachable,
key-only, and fast enough — measured through the real receiver into a scratch area that is
never published."""

from __future__ import annotations

from difusor.compliance.outcome import Outcome
from difusor.config import Config, parse_address
from difusor.monitor.disk import GIB, figures, name, volumes
from difusor.monitor.sftpspeed import auth_methods, measure_upload
from difusor.receive.sftp.checkkey import check_key

DISK = ("disk", "II.1.c", "Al menos 20 GB libres en disco")
SFTP_AUTH = ("sftp_auth", "II.1.d", "SFTP accesible, solo con llave pública")
SFTP_SPEED = ("sftp_speed", "II.1.d", "SFTP a 40 MB/s o más")


def disk(cfg: Config) -> Outcome:
    need = cfg.monitor.disk_critical_gb or 20.0
    found = volumes(cfg)
    said, low = [], []
    for v in found:
        said.append(f"{name(v)}: {figures(v)}")
        if v.free < need * GIB:  # GB as df -h and the monitor count them (2**30)
            low.append(name(v))
    data = {"volumes": [{"folders": list(v.folders), "free": v.free, "total": v.total,
                         "inodes_free": v.inodes_free} for v in found], "minimum_gb": need}
    evidence = "; ".join(said) + f" (mínimo {need:g} GB)"
    if low:
        return Outcome.fail(*DISK, evidence, **data)
    return Outcome.ok(*DISK, evidence, **data)


def sftp_endpoint(cfg: Config) -> tuple[str, int] | None:
    """Where this machine reaches its own receiver: the embedded server's listen address, or
    the local sshd (``[registro] sftp_port``) when OpenSSH receives."""
    if cfg.sftp.enabled:
        host, port = parse_address(cfg.sftp.listen)
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port
    if cfg.dropfolder.dirs:
        return "127.0.0.1", cfg.registro.sftp_port
    return None


def sftp(cfg: Config, size: int) -> list[Outcome]:
    end = sftp_endpoint(cfg)
    if end is None:
        why = "no hay receptor SFTP ([sftp] enabled = false y [dropfolder] sin carpetas)"
        return [Outcome.fail(*SFTP_AUTH, why), Outcome.fail(*SFTP_SPEED, why)]
    host, port = end
    user = cfg.sftp.user
    try:
        methods = auth_methods(host, port, user)
    except OSError as exc:
        why = f"{host}:{port} no responde: {exc}"
        return [Outcome.fail(*SFTP_AUTH, why), Outcome.fail(*SFTP_SPEED, why)]
    said = f"{host}:{port} ofrece a «{user}»: {', '.join(methods) or 'nada'}"
    auth = (Outcome.ok(*SFTP_AUTH, said, methods=methods) if methods == ["publickey"]
            else Outcome.fail(*SFTP_AUTH, said + " (debe ser solo publickey)", methods=methods))
    r = measure_upload(host, port, user, check_key(cfg), size)
    data = {"bytes": r.bytes, "seconds": r.seconds, "mb_per_s": r.mb_per_s, "client": r.client,
            "host_key": r.host_key, "rounds": list(r.rounds)}
    if not r.ok:  # not measured, or under the minimum (measure_upload weighs it)
        return [auth, Outcome.fail(*SFTP_SPEED, r.message, **data)]
    evidence = (f"{r.message}; medido desde esta máquina con {r.client}: lo que cuenta es el "
                "enlace de la autoridad («difusor probe --sftp-speed» desde su lado)")
    return [auth, Outcome.ok(*SFTP_SPEED, evidence, **data)]
