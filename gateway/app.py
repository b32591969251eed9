"""The gateway: every request to the upstream passes here, or is refused here.

One aiohttp middleware takes every request before any routing, so no router can normalise a
path differently from the policy: the raw request target is normalised once (gateway.paths),
exactly as the upstream will see it, and that is what the policy judges and what is sent on.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from yarl import URL

from gateway import config as gateway_config
from gateway import decisions, identity, pages, paths, proxy, sessions, websocket
from gateway.config import GatewayConfig
from gateway.identity import Caller
from gateway.idp_client import IdpClient, IdpError, Login
from gateway.policy import Identity, Outcome
from gateway.store import NAMESPACE, GatewayStore
from idp.common import metrics
from idp.common.redirects import safe_next
from idp.common.store import StoreUnavailable
from idp.config import Settings
from idp.config import load as load_settings

LOGIN_PREFIX = "gw:login:"
LOGIN_SECONDS = 600
STATE_COOKIE = "bascule_gateway_state"
TOUCH_INTERVAL_SECONDS = 60
FRESH_SECONDS = 60  # a sign-in this recent is as fresh as re-authenticating can make it
UPSTREAM_CONNECTIONS = 256
GC_THRESHOLD = 20_000  # allocations between young-generation collections (CPython: 700)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Gateway:
    def __init__(self, config: GatewayConfig, store_namespace: str = NAMESPACE) -> None:
        self.config = config
        self.policy = config.policy
        settings = config.settings
        self.store = GatewayStore(settings.redis_url, settings.sqlalchemy_url, store_namespace)
        upstream = self.policy.upstream
        self.assertions = identity.Assertions(
            config.signer, config.public_url, upstream.name, upstream.org
        )
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self, _app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS, keepalive_timeout=30)
        self.upstream = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )
        self.idp = IdpClient(
            self.config, aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        )
        self.audit = decisions.AuditTrail(self.idp)
        # What start-up allocated lives as long as the worker: out of the collector's sight,
        # and fewer collections of the young, short-lived per-request objects (latency tail).
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, 20, 20)
        self._spawn(self.audit.run())

    async def stop(self, _app: web.Application) -> None:
        for task in self._background:
            task.cancel()
        await self.audit.flush()
        await self.upstream.close()
        await self.idp.http.close()
        await self.store.close()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- every request ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            target = paths.normalise(request.raw_path)
        except paths.AmbiguousPath as exc:
            return pages.problem(request, 400, f"Refused: {exc.reason}.")
        if target.path.startswith("/_bascule/"):
            return await self.internal(request, target)
        started = time.perf_counter()
        verdict = await self.judge(request, request.method, target.path, self.client_ip(request))
        if isinstance(verdict, web.StreamResponse):
            return verdict
        decision, caller = verdict
        decisions.LATENCY.observe(time.perf_counter() - started)
        original = target.path + (f"?{target.query}" if target.query else "")
        if decision.outcome is Outcome.ALLOW:
            return await self.pass_on(request, original, caller)
        if decision.outcome is Outcome.DENY:
            return pages.problem(request, 403, f"You may not do this: {decision.reason}.")
        step_up = decision.outcome is Outcome.STEP_UP
        if not pages.is_browser(request):
            message = "Sign in again first." if step_up else "Sign in first (a live session)."
            return pages.problem(request, 401, message)
        return await self.start_login(request, original, "login" if step_up else None)

    async def judge(
        self, request: web.Request, method: str, path: str, ip: str
    ) -> tuple[Any, Caller | None] | web.StreamResponse:
        """The policy's decision for this caller, or a 503 when the store or the IdP is down
        (fail closed)."""
        try:
            caller = await self.identify(request)
        except (StoreUnavailable, IdpError):
            decisions.DECISIONS.labels("unavailable").inc()
            return pages.problem(request, 503, "Sign-in checks are unavailable; try again soon.")
        now = time.time()
        checked = Identity(caller.permissions, caller.amr, caller.auth_time) if caller else None
        decision = self.policy.decide(method, path, ip, checked, now)
        if (
            decision.outcome is Outcome.STEP_UP
            and caller
            and now - caller.auth_time < FRESH_SECONDS
        ):
            # Just signed in and still not enough (another kind of factor is needed): sending
            # them round again would loop.
            reason = f"{decision.reason}, which a new sign-in did not give"
            decision = replace(decision, outcome=Outcome.DENY, reason=reason)
        self.audit.note(decision, method, path, ip, caller)
        return decision, caller

    async def identify(self, request: web.Request) -> Caller | None:
        cookie = sessions.parse_cookie(request.cookies.get(self.config.cookie_name))
        if cookie is None:
            return None
        now = time.time()
        limits = self.config.session_limits
        found = await sessions.look_up(self.store, cookie, self.idp.org_id, now, limits)
        if found is None:
            return None
        permissions = found.permissions
        if permissions is None:
            permissions = await self.idp.permissions(cookie.uid)
        if now - found.idp.last_seen > TOUCH_INTERVAL_SECONDS:
            self._spawn(sessions.touch(self.store, cookie.sid, found.idp, now, limits))
        return Caller(
            cookie.uid,
            found.session.email,
            cookie.sid,
            permissions,
            tuple(found.idp.amr),
            found.idp.auth_time or 0.0,
        )

    def identity_headers(self, caller: Caller | None) -> dict[str, str]:
        return self.assertions.headers_for(caller, time.time())

    async def pass_on(
        self, request: web.Request, path_and_query: str, caller: Caller | None
    ) -> web.StreamResponse:
        headers = proxy.upstream_headers(
            request,
            self.identity_headers(caller),
            self.client_ip(request),
            self.config.public_url,
            self.config.private_cookies,
        )
        # encoded=True: the target goes out exactly as normalised and judged. yarl would
        # otherwise re-quote it (``%41`` to ``A``, ``%2f`` to ``/`` in the query, ``%21`` to
        # ``!`` in the path), and the upstream would read something the policy never saw.
        url = URL(self.policy.upstream.url.rstrip("/") + path_and_query, encoded=True)
        if websocket.is_upgrade(request):
            return await websocket.bridge(request, self.upstream, url, headers)
        return await proxy.forward(
            request, self.upstream, url, headers, self.config.upstream_timeout
        )

    def client_ip(self, request: web.Request) -> str:
        """The peer, or the address the trusted proxies in front of us say they served."""
        trusted = self.config.settings.trusted_proxy_count
        forwarded = [
            hop.strip()
            for value in request.headers.getall("X-Forwarded-For", [])
            for hop in value.split(",")
        ]
        if trusted and len(forwarded) >= trusted:
            return forwarded[-trusted]
        return request.remote or ""

    # --- sign-in and sign-out ----------------------------------------------------------------

    async def start_login(
        self, request: web.Request, return_to: str, prompt: str | None = None
    ) -> web.StreamResponse:
        login = Login.start()
        try:
            url = await self.idp.authorize_url(login, prompt=prompt)
            record = {"nonce": login.nonce, "verifier": login.verifier, "return_to": return_to}
            await self.store.put(LOGIN_PREFIX + login.state, json.dumps(record), LOGIN_SECONDS)
        except (StoreUnavailable, IdpError):
            return pages.problem(request, 503, "Sign-in is unavailable; try again soon.")
        response = pages.redirect(url)
        response.set_cookie(
            STATE_COOKIE, login.state, max_age=LOGIN_SECONDS, path="/_bascule/callback",
            httponly=True, secure=self.config.secure_cookies, samesite="Lax",
        )  # fmt: skip
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if "error" in query:
            message = query.get("error_description") or query["error"]
            return pages.problem(request, 400, f"Sign-in did not complete: {message}")
        state, code = query.get("state", ""), query.get("code", "")
        bound = request.cookies.get(STATE_COOKIE, "")
        if not state or not code or not hmac.compare_digest(state, bound):
            return pages.problem(request, 400, "This sign-in was not started in this browser.")
        if query.get("iss", self.config.issuer) != self.config.issuer:
            return pages.problem(request, 400, "The answer names another identity provider.")
        try:
            raw = await self.store.take(LOGIN_PREFIX + state[:64])
            if raw is None:
                return pages.problem(request, 400, "This sign-in has expired; start again.")
            pending = json.loads(raw)
            login = Login(state, pending["nonce"], pending["verifier"])
            claims, id_token = await self.idp.sign_in(code, login)
            cookie = await sessions.create(
                self.store,
                sessions.GatewaySession(
                    uid=str(claims["sub"]),
                    email=str(claims.get("email", "")),
                    sid=str(claims["sid"]),
                    created=time.time(),
                    id_token=id_token,
                ),
                self.config.session_limits,
            )
        except (StoreUnavailable, IdpError) as exc:
            return pages.problem(request, 503, f"Sign-in could not complete: {exc}")
        target = safe_next(pending["return_to"], self.config.public_url, default="/")
        response = pages.redirect(target)
        response.del_cookie(STATE_COOKIE, path="/_bascule/callback")
        response.set_cookie(
            self.config.cookie_name, cookie, path="/", httponly=True,
            secure=self.config.secure_cookies, samesite="Lax",
        )  # fmt: skip
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """End the gateway session, then the IdP session (RP-initiated logout)."""
        cookie = sessions.parse_cookie(request.cookies.get(self.config.cookie_name))
        location = self.config.public_url + "/"
        if cookie is not None:
            try:
                found = await self.store.get_many([cookie.key])
                await self.store.delete(cookie.key)
                if found[0] is not None:
                    hint = json.loads(found[0])["id_token"]
                    location = await self.idp.logout_url(hint)
            except (StoreUnavailable, IdpError):
                pass  # the cookie goes anyway; the IdP session ends at its own sign-out
        response = pages.redirect(location)
        response.del_cookie(self.config.cookie_name, path="/")
        return response

    async def backchannel_logout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = form.get("logout_token")
        if not isinstance(token, str):
            return pages.problem(request, 400, "logout_token is missing")
        try:
            claims = await self.idp.verified(token)
        except IdpError as exc:
            return pages.problem(request, 400, str(exc))
        events = claims.get("events")
        if claims.get("aud") != gateway_config.CLIENT_ID or not isinstance(events, dict):
            return pages.problem(request, 400, "not a logout token for the gateway")
        if "nonce" in claims or not claims.get("sid"):
            return pages.problem(request, 400, "not a logout token for the gateway")
        await sessions.end_for_idp_session(self.store, str(claims["sid"]))
        return web.Response(status=200, headers={"Cache-Control": "no-store"})

    # --- /_bascule/ -------------------------------------------------------------------------

    async def internal(self, request: web.Request, target: paths.Target) -> web.StreamResponse:
        route = INTERNAL.get((request.method, target.path))
        if route is None:
            return pages.problem(request, 404, "There is nothing at this address.")
        return await route(self, request)

    async def login(self, request: web.Request) -> web.StreamResponse:
        return_to = safe_next(request.query.get("rd"), self.config.public_url, default="/")
        prompt = "login" if request.query.get("reauth") == "1" else None
        return await self.start_login(request, return_to, prompt)

    async def forward_auth(self, request: web.Request) -> web.StreamResponse:
        """For nginx auth_request, Caddy forward_auth, Traefik forwardAuth: 200 with the
        identity headers, 401 (sign in) or 403 (denied); never a redirect (nginx turns a 3xx
        into a 500)."""
        uris = {request.headers.get(h) for h in ("X-Original-URI", "X-Forwarded-Uri")} - {None}
        methods = {request.headers.get(h) for h in ("X-Original-Method", "X-Forwarded-Method")}
        methods.discard(None)
        if len(uris) > 1 or len({m.upper() for m in methods if m}) > 1:
            # A proxy that passes a client's own copy of one of them through must not let the
            # client choose what is judged: two different answers are refused.
            return web.Response(status=403, text="Refused: the original request is ambiguous.")
        raw_uri = next(iter(uris), "")
        method = (next(iter(methods), None) or "GET").upper()
        try:
            target = paths.normalise(raw_uri or "")
        except paths.AmbiguousPath as exc:
            return web.Response(status=403, text=f"Refused: {exc.reason}.")
        verdict = await self.judge(request, method, target.path, self.client_ip(request))
        if isinstance(verdict, web.StreamResponse):
            return verdict
        decision, caller = verdict
        if decision.outcome is Outcome.ALLOW:
            return web.Response(status=200, headers=self.identity_headers(caller))
        if decision.outcome is Outcome.DENY:
            return web.Response(status=403, text=f"You may not do this: {decision.reason}.")
        original = target.path + (f"?{target.query}" if target.query else "")
        query = {"rd": original}
        if decision.outcome is Outcome.STEP_UP:
            query["reauth"] = "1"  # the IdP session is live but not recent enough
        login = f"{self.config.public_url}/_bascule/login?{urlencode(query)}"
        body = f'<!doctype html><title>Sign in</title><p><a href="{login}">Sign in</a></p>'
        return web.Response(
            status=401, text=body, content_type="text/html", headers={"X-Bascule-Login": login}
        )

    async def healthz(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.StreamResponse:
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            return web.json_response({"status": "unavailable", "store": str(exc)}, status=503)
        return web.json_response({"status": "ok"})

    async def metrics(self, _request: web.Request) -> web.StreamResponse:
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})


INTERNAL: dict[tuple[str, str], Callable[[Gateway, web.Request], Awaitable[web.StreamResponse]]] = {
    ("GET", "/_bascule/callback"): Gateway.callback,
    ("GET", "/_bascule/login"): Gateway.login,
    ("GET", "/_bascule/logout"): Gateway.logout,
    ("POST", "/_bascule/logout"): Gateway.logout,
    ("POST", "/_bascule/backchannel-logout"): Gateway.backchannel_logout,
    ("GET", "/_bascule/auth"): Gateway.forward_auth,
    ("HEAD", "/_bascule/auth"): Gateway.forward_auth,
    ("GET", "/_bascule/healthz"): Gateway.healthz,
    ("GET", "/_bascule/readyz"): Gateway.readyz,
    ("GET", "/_bascule/metrics"): Gateway.metrics,
    ("GET", pages.STYLESHEET): lambda _gateway, _request: _stylesheet(),
}
GATEWAY = web.AppKey("gateway", Gateway)


async def _stylesheet() -> web.StreamResponse:
    return pages.stylesheet()


def create_app(
    settings: Settings | None = None, *, store_namespace: str = NAMESPACE
) -> web.Application:
    """The gateway application; gunicorn runs it with aiohttp's worker. Tests pass their own
    settings and the store namespace their IdP uses."""
    gateway = Gateway(gateway_config.load(settings or load_settings()), store_namespace)

    @web.middleware
    async def everything(request: web.Request, handler: Handler) -> web.StreamResponse:
        del handler  # whatever aiohttp's router made of the path, the gateway judges it
        return await gateway.handle(request)

    # Proxied bodies stream and know no limit; this bounds only what the gateway reads itself.
    app = web.Application(middlewares=[everything], client_max_size=64 * 1024)
    app[GATEWAY] = gateway
    # A route that matches everything spares aiohttp a "not found" exception per request
    # (a tenth of forward-auth's time); it is never called: the middleware answers.
    app.router.add_route("*", "/{anything:.*}", gateway.handle)
    app.on_startup.append(gateway.start)
    app.on_cleanup.append(gateway.stop)
    return app
