"""The console's HTTP side (Starlette, served by granian): login, the page, its event stream and
the actions.

Security, in one place: every page and answer carries a strict CSP (scripts and styles only
from the console's own files, no inline code), ``nosniff``, no framing and ``no-store``; every
action is a POST with the session's CSRF token in ``X-CSRF-Token`` and an ``Origin`` (when the
browser sends one) equal to the console's own; text the operator types is only ever set with
``textContent`` by the page's script and escaped by Jinja in the two templates.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from difusor.console.desks import PREFIX, Desk, Desks
from difusor.console.sessions import LoginThrottle, Session, Sessions, same_token
from difusor.console.users import UserStore
from difusor.errors import DifusorError

HERE = Path(__file__).parent
COOKIE = "difusor_consola"
LOGIN_COOKIE = "difusor_consola_login"
KEEPALIVE = 15.0
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "x-frame-options": "DENY", "referrer-policy": "no-referrer",
                    "cross-origin-opener-policy": "same-origin"}
Handler = Callable[[Request, Session, Desk], Awaitable[Response]]


class Console:
    def __init__(self, desks: Desks, users: UserStore, sessions: Sessions,
                 throttle: LoginThrottle) -> None:
        self.desks, self.users = desks, users
        self.sessions, self.throttle = sessions, throttle
        self.templates = Jinja2Templates(directory=HERE / "templates")

    def _desk(self, request: Request) -> Desk | None:
        """The site the path names (``/sitios/NAME/…``), else the default one."""
        return self.desks.get(request.path_params.get("sitio"))

    # -- who is asking ---------------------------------------------------------------------

    @staticmethod
    def _proxied(request: Request) -> bool:
        """Forwarded headers count only from a proxy on this machine (nginx-config's)."""
        return bool(request.client) and request.client.host in ("127.0.0.1", "::1")  # type: ignore[union-attr]

    def _address(self, request: Request) -> str:
        forwarded = request.headers.get("x-real-ip")
        if forwarded and self._proxied(request):
            return forwarded
        return request.client.host if request.client else "?"

    def _secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or (
            self._proxied(request) and request.headers.get("x-forwarded-proto") == "https")

    def _cookie(self, request: Request, name: str) -> str:
        return f"__Host-{name}" if self._secure(request) else name

    def _session(self, request: Request) -> Session | None:
        session = self.sessions.get(request.cookies.get(self._cookie(request, COOKIE)))
        return session if session and self.users.exists(session.user) else None

    def _set_cookie(self, request: Request, response: Response, name: str, value: str,
                    max_age: int | None) -> None:
        response.set_cookie(self._cookie(request, name), value, max_age=max_age, path="/",
                            httponly=True, samesite="strict", secure=self._secure(request))

    # -- pages -----------------------------------------------------------------------------

    async def login_page(self, request: Request, error: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = self.templates.TemplateResponse(
            request, "login.html", {"title": self.desks.default.title, "csrf": token,
                                    "error": error},
            status_code=status)
        self._set_cookie(request, response, LOGIN_COOKIE, token, 3600)
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        user, password = str(form.get("usuario", "")).strip(), str(form.get("contrasena", ""))
        if not same_token(str(form.get("csrf", "")),
                          request.cookies.get(self._cookie(request, LOGIN_COOKIE), "") or "-"):
            return await self.login_page(request, "la página de acceso venció; vuelve a intentar",
                                         403)
        address = self._address(request)
        wait = self.throttle.wait(address, user)
        if wait > 0:
            response = await self.login_page(
                request, f"demasiados intentos fallidos; espera {wait / 60:.0f} min", 429)
            response.headers["retry-after"] = str(int(wait) + 1)
            return response
        if not await to_thread.run_sync(self.users.verify, user, password):
            self.throttle.failed(address, user)
            self.desks.default.actions.ledger.event(
                "console_login_failed",
                f"consola: acceso rechazado para «{user[:64]}» desde {address}",
                detail={"user": user[:64], "ip": address})
            return await self.login_page(request, "usuario o contraseña incorrectos", 401)
        self.throttle.succeeded(address, user)
        token, _session = self.sessions.open(user)
        self.desks.default.actions.ledger.event(
            "console_login", f"consola: {user} entró desde {address}",
            detail={"user": user, "ip": address})
        response = RedirectResponse("/", status_code=303)
        self._set_cookie(request, response, COOKIE, token, int(self.sessions.lifetime))
        response.delete_cookie(self._cookie(request, LOGIN_COOKIE), path="/")
        return response

    async def page(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return RedirectResponse("/acceso", status_code=303)
        desk = self._desk(request)
        if desk is None:
            return _no_such_site(request)
        return self.templates.TemplateResponse(
            request, "console.html", {"title": desk.title, "csrf": session.csrf,
                                      "user": session.user, "desk": desk,
                                      "desks": list(self.desks) if len(self.desks) > 1 else []})

    async def state(self, request: Request) -> Response:
        if self._session(request) is None:
            return JSONResponse({"error": "inicia sesión"}, status_code=401)
        desk = self._desk(request)
        if desk is None:
            return _no_such_site(request)
        await self.desks.ready(desk)
        return Response(desk.live.state, media_type="application/json")

    async def events(self, request: Request) -> Response:
        if self._session(request) is None:
            return JSONResponse({"error": "inicia sesión"}, status_code=401)
        desk = self._desk(request)
        if desk is None:
            return _no_such_site(request)
        await self.desks.ready(desk)
        return StreamingResponse(self._stream(desk), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def _stream(self, desk: Desk) -> AsyncIterator[bytes]:
        live = desk.live
        seen, sent_series = -2, b""
        while True:
            version = await live.wait(seen, KEEPALIVE)
            if version == -1:  # the console is stopping (a closed tab is Starlette's to notice)
                return
            if version == seen:
                yield b": sigo aqui\n\n"
                continue
            seen = version
            if live.series is not sent_series:
                sent_series = live.series
                yield b"event: serie\ndata: " + sent_series + b"\n\n"
            yield b"event: estado\ndata: " + live.state + b"\n\n"

    async def logout(self, request: Request) -> Response:
        session = self._session(request)
        form = await request.form()
        if session is None or not same_token(str(form.get("csrf", "")), session.csrf):
            return JSONResponse({"error": "falta la ficha CSRF de la sesión"}, status_code=403)
        self.sessions.close(request.cookies.get(self._cookie(request, COOKIE)))
        response = RedirectResponse("/acceso", status_code=303)
        response.delete_cookie(self._cookie(request, COOKIE), path="/")
        return response

    # -- actions ---------------------------------------------------------------------------

    def action(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self._session(request)
            if session is None:
                return JSONResponse({"error": "inicia sesión"}, status_code=401)
            desk = self._desk(request)
            if desk is None:
                return _no_such_site(request)
            if not same_token(request.headers.get("x-csrf-token"), session.csrf):
                return JSONResponse({"error": "falta la ficha CSRF de la sesión o no coincide"},
                                    status_code=403)
            origin = request.headers.get("origin")
            if origin and origin != f"{request.url.scheme}://{request.url.netloc}" and not (
                    self._proxied(request) and origin.startswith("https://")
                    and origin.removeprefix("https://") == request.headers.get("host")):
                return JSONResponse({"error": "origen no permitido"}, status_code=403)
            try:
                response = await handler(request, session, desk)
            except DifusorError as exc:
                return JSONResponse({"error": exc.message}, status_code=400)
            if desk.started:
                await desk.live.refresh(acted=True)
            return response
        return endpoint

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise DifusorError("el cuerpo no es JSON") from None
        if not isinstance(body, dict):
            raise DifusorError("el cuerpo debe ser un objeto JSON")
        return {k: v if isinstance(v, str | int | float) else str(v) for k, v in body.items()}

    async def do_shield(self, request: Request, session: Session, desk: Desk) -> Response:
        b = await self._body(request)
        message = await to_thread.run_sync(lambda: desk.actions.shield(
            session.user, str(b.get("accion", "")), str(b.get("llave", "")).strip(),
            float(b.get("minutos") or 60), str(b.get("motivo", ""))))
        return JSONResponse({"mensaje": message})

    async def do_incident(self, request: Request, session: Session, desk: Desk
                          ) -> Response:
        b = {k: str(v) for k, v in (await self._body(request)).items()}
        number = request.path_params.get("numero")
        if number is None:
            made = await to_thread.run_sync(desk.actions.new_incident, session.user, b)
            return JSONResponse({"mensaje": f"incidente n.º {made} registrado", "numero": made})
        message = await to_thread.run_sync(desk.actions.edit_incident, session.user,
                                           int(number), b)
        return JSONResponse({"mensaje": message})

    async def do_preview(self, request: Request, session: Session, desk: Desk
                         ) -> Response:
        b = await self._body(request)
        return JSONResponse(await to_thread.run_sync(desk.actions.rollback_preview,
                                                     str(b.get("corte", ""))))

    async def do_rollback(self, request: Request, session: Session, desk: Desk
                          ) -> Response:
        b = await self._body(request)
        message = await to_thread.run_sync(desk.actions.rollback, session.user,
                                           str(b.get("corte", "")))
        return JSONResponse({"mensaje": message})

    async def do_purge(self, request: Request, session: Session, desk: Desk) -> Response:
        return JSONResponse({"mensaje": await to_thread.run_sync(desk.actions.purge, session.user)})

    async def do_check(self, request: Request, session: Session, desk: Desk) -> Response:
        return JSONResponse({"mensaje": await to_thread.run_sync(desk.actions.check, session.user)})

    # -- the application -------------------------------------------------------------------

    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            await self.desks.ready(self.desks.default)
            try:
                yield
            finally:
                await self.desks.stop()

        # A site's own routes: at / for the default site and under /sitios/NAME/ for each one
        # (the page's script names them relative to the page).
        per_site = [
            ("/", self.page, ["GET"]),
            ("/estado.json", self.state, ["GET"]),
            ("/eventos", self.events, ["GET"]),
            ("/api/escudo", self.action(self.do_shield), ["POST"]),
            ("/api/incidentes", self.action(self.do_incident), ["POST"]),
            ("/api/incidentes/{numero:int}", self.action(self.do_incident), ["POST"]),
            ("/api/vuelta-atras/vista-previa", self.action(self.do_preview), ["POST"]),
            ("/api/vuelta-atras", self.action(self.do_rollback), ["POST"]),
            ("/api/purga", self.action(self.do_purge), ["POST"]),
            ("/api/revision", self.action(self.do_check), ["POST"]),
        ]
        routes = [
            Route("/acceso", self.login_page, methods=["GET"]),
            Route("/acceso", self.login, methods=["POST"]),
            Route("/salir", self.logout, methods=["POST"]),
            *(Route(path, handler, methods=methods) for path, handler, methods in per_site),
            *(Route(PREFIX + "/{sitio}" + path, handler, methods=methods)
              for path, handler, methods in per_site),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        app = Starlette(routes=routes, lifespan=lifespan)
        return _Secured(app)  # type: ignore[return-value]



def _no_such_site(request: Request) -> Response:
    return JSONResponse({"error": f"no existe el sitio «{request.path_params.get('sitio')}»"},
                        status_code=404)


class _Secured:
    """The security headers on every answer, the event stream's included (a plain ASGI wrapper:
    Starlette's ``BaseHTTPMiddleware`` buffers around streaming answers)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"cache-control" or static]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secured)
