"""What the console can do, each through the function the matching command uses, and each
written to the ledger as a ``console_action`` event naming the user (the memoria's chronology
lists them). Every action raises ``DifusorError`` with a Spanish reason when refused."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.errors import DifusorError, NotFound
from difusor.ledger import Ledger
from difusor.moments import parse_moment
from difusor.publish.activate import live_release

CHECK_SFTP_MB = 20  # the console's check uploads a smaller test file than the command's 200 MB


class Actions:
    def __init__(self, cfg: Config, ledger: Ledger, config_path: Path, site: str) -> None:
        self.cfg, self.ledger = cfg, ledger
        self.config_path, self.site = config_path, site
        self.zone = ZoneInfo(cfg.site.timezone)
        self._check: subprocess.Popen[bytes] | None = None

    def _record(self, user: str, action: str, message: str, **detail: Any) -> str:
        self.ledger.event("console_action", f"consola, {user}: {message}",
                          detail={"user": user, "action": action, **detail})
        return message

    # -- shield ----------------------------------------------------------------------------

    def shield(self, user: str, what: str, key: str = "", minutes: float = 60.0,
               reason: str = "") -> str:
        from difusor.shield import operator

        if what == "block":
            if not 0 < minutes <= 7 * 24 * 60:
                raise DifusorError("los minutos del bloqueo van de 1 a 10080")
            change = operator.block(self.cfg, key, minutes,
                                    reason or f"bloqueo manual desde la consola ({user})")
        elif what == "unblock":
            change = operator.unblock(self.cfg, key)
        elif what in ("allow", "disallow"):
            change = operator.allow(self.cfg, key, remove=what == "disallow")
        elif what in ("attack-on", "attack-off"):
            change = operator.attack_mode(self.cfg, what == "attack-on")
        else:
            raise DifusorError(f"acción del escudo desconocida: «{what}»")
        operator.record(self.ledger, change)
        return self._record(user, f"shield-{what}", change.message, key=key or None)

    # -- incidents -------------------------------------------------------------------------

    def new_incident(self, user: str, form: dict[str, str]) -> int:
        from difusor.monitor.incident_sheet import new_incident

        missing = [label for key, label in (("title", "título"), ("start", "inicio"),
                                            ("cause", "causa"), ("impact", "impacto"),
                                            ("measure", "medida")) if not form.get(key, "").strip()]
        if missing:
            raise DifusorError("faltan: " + ", ".join(missing))
        start = parse_moment(form["start"], self.zone, "inicio")
        end = parse_moment(form["end"], self.zone, "fin") if form.get("end", "").strip() else None
        made = new_incident(self.ledger, title=form["title"].strip(), start=start, end=end,
                            cause=form["cause"].strip(), impact=form["impact"].strip(),
                            measures=[f"{form['measure'].strip()} ({user})"],
                            kind=form.get("kind") or None, severity=form.get("severity") or None,
                            now=datetime.now(UTC))
        self._record(user, "incident-new", f"registró el incidente n.º {made}", incident=made)
        return made

    def edit_incident(self, user: str, number: int, form: dict[str, str]) -> str:
        from difusor.monitor.incident_sheet import edit_incident

        if self.ledger.incident(number) is None:
            raise NotFound(f"no existe el incidente n.º {number}")
        fields = {k: (form.get(k) or "").strip() or None for k in ("cause", "impact", "state")}
        measure = (form.get("measure") or "").strip()
        if not any(fields.values()) and not measure:
            raise DifusorError("no hay nada que registrar: escribe causa, impacto, medida o estado")
        edit_incident(self.ledger, number, cause=fields["cause"], impact=fields["impact"],
                      measures=[f"{measure} ({user})"] if measure else [], state=fields["state"],
                      now=datetime.now(UTC))
        return self._record(user, "incident-edit", f"actualizó el incidente n.º {number}",
                            incident=number, **{k: v for k, v in fields.items() if v})

    # -- the live corte --------------------------------------------------------------------

    def rollback_preview(self, corte: str) -> dict[str, Any]:
        from difusor.paths import StateLayout
        from difusor.store.layout import StoreLayout
        from difusor.store.manifest import ManifestStore, changed_paths

        layout = StoreLayout(StateLayout(self.cfg.state_dir).store)
        manifests = ManifestStore(layout.manifests)
        live = live_release(layout)
        if not manifests.exists(corte):
            raise NotFound(f"el corte {corte} no existe o ya fue depurado")
        if corte == live:
            raise DifusorError(f"el corte {corte} ya es el que está en línea")
        changed, removed = changed_paths(manifests.load(live) if live else None,
                                         manifests.load(corte))
        rel = self.ledger.release(corte)
        return {"corte": corte, "en_linea": live, "cambian": len(changed),
                "se_quitan": len(removed), "ejemplos": (changed + removed)[:12],
                "hora_autoridad": rel.corte_time if rel else None}

    def rollback(self, user: str, corte: str) -> str:
        from difusor.publish.publisher import Publisher
        from difusor.publish.rollback import rollback

        self.rollback_preview(corte)  # the same refusals, said before anything moves
        publisher = Publisher(self.cfg, self.ledger)
        before = live_release(publisher.layout)
        target = rollback(publisher, corte)
        return self._record(user, "rollback", f"volvió al corte {target} (antes {before})",
                            corte=target, previous=before)

    def purge(self, user: str) -> str:
        from difusor.publish.cdn import manual_purge

        if not self.cfg.cdn:
            raise DifusorError("no hay ninguna CDN configurada ([[cdn]])")
        report = manual_purge(self.cfg, self.ledger, [])
        state = "comprobada en el borde" if report.ok else "NO comprobada (ver bitácora)"
        return self._record(user, "purge", f"purgó la CDN: {state}", ok=report.ok)

    def check(self, user: str) -> str:
        """``difusor check`` in a process of its own: it takes a minute and loads the machine;
        its result reaches the ledger (a ``check`` event) and the page from there."""
        if self._check is not None and self._check.poll() is None:
            raise DifusorError("ya hay una revisión en curso")
        args = [sys.executable, "-m", "difusor", "check", "--json", "--sftp-size",
                str(CHECK_SFTP_MB), "--config", str(self.config_path)]
        if self.site:
            args += ["--site", self.site]
        self._check = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        return self._record(user, "check", "lanzó la revisión de la convocatoria (difusor check)")
