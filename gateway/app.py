"""The gateway: every request to the upstream passes here, or is refused here.

``Gateway.handle`` takes every request straight from the server (gateway.server), with no
router in between that could normalise a path differently from the policy: the raw request
target is normalised once (gateway.paths), exactly as the upstream will see it, and that is
what the policy judges and what is sent on.
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
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp

from gateway import config as gateway_config
from gateway import decisions, identity, pages, paths, proxy, sessions, websocket
from gateway.config import GatewayConfig
from gateway.identity import Caller
from gateway.idp_client import IdpClient, IdpError, Login
from gateway.messages import Request, Response, delete_cookie, set_cookie, text
from gateway.policy import Decision, Identity, Outcome
from gateway.store import NAMESPACE, GatewayStore
from gateway.upstream import UpstreamPool
from idp.common import metrics
from idp.common.redirects import safe_next
from idp.common.session_record import SessionRecord
from idp.common.store import StoreUnavailable
from idp.config import Settings
from idp.config import load as load_settings

LOGIN_PREFIX = "gw:login:"
LOGIN_SECONDS = 600
STATE_COOKIE = "bascule_gateway_state"
TOUCH_INTERVAL_SECONDS = 60
FRESH_SECONDS = 60  # a sign-in this recent is as fresh as re-authenticating can make it
GC_THRESHOLD = 20_000  # allocations between young-generation collections (CPython: 700)
MAX_FORM_BYTES = 64 * 1024  # what the gateway reads itself (proxied bodies know no limit)
# What a forward-auth request says it asks about, under the names nginx, Caddy, Traefik use.
ORIGINAL_REQUEST_HEADERS = frozenset(
    {"x-original-uri", "x-forwarded-uri", "x-original-method", "x-forwarded-method"}
)


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
        self.upstream = UpstreamPool(self.policy.upstream.url)
        self.upstream_prefix = urlsplit(self.policy.upstream.url).path.rstrip("/")
        public = urlsplit(config.public_url)
        self.forwarded = (public.scheme, public.netloc)
        self._background: set[asyncio.Task[Any]] = set()
        self._touching: set[str] = set()  # IdP sessions whose last-seen is being written

    async def start(self) -> None:
        """In the worker's event loop, before the first request."""
        self.idp = IdpClient(
            self.config, aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        )
        self.audit = decisions.AuditTrail(self.idp)
        # What start-up allocated lives as long as the worker: out of the collector's sight,
        # and fewer collections of the young, short-lived per-request objects (latency tail).
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, 20, 20)
        self._spawn(self.audit.run())

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await self.audit.flush()
        self.upstream.close()
        await self.idp.http.close()
        await self.store.close()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- every request ---------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            target = paths.normalise(request.target)
        except paths.AmbiguousPath as exc:
            return pages.problem(request, 400, f"Refused: {exc.reason}.")
        if target.path.startswith("/_bascule/"):
            return await self.internal(request, target)
        started = time.perf_counter()
        verdict = await self.judge(request, request.method, target.path, self.client_ip(request))
        if isinstance(verdict, Response):
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

    __call__ = handle  # the server's handler (and gunicorn wants its app callable)

    async def judge(
        self, request: Request, method: str, path: str, ip: str
    ) -> tuple[Decision, Caller | None] | Response:
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

    async def identify(self, request: Request) -> Caller | None:
        cookie = sessions.parse_cookie(request.cookie(self.config.cookie_name))
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
        if now - found.idp.last_seen > TOUCH_INTERVAL_SECONDS and cookie.sid not in self._touching:
            self._touching.add(cookie.sid)
            self._spawn(self._touch(cookie.sid, found.idp, now))
        return Caller(
            cookie.uid,
            found.session.email,
            cookie.sid,
            permissions,
            tuple(found.idp.amr),
            found.idp.auth_time or 0.0,
        )

    async def _touch(self, sid: str, record: SessionRecord, now: float) -> None:
        """One write per session at a time: every request until it lands would start another
        (a burst of store writes in threads, and a latency spike)."""
        try:
            await sessions.touch(self.store, sid, record, now, self.config.session_limits)
        finally:
            self._touching.discard(sid)

    def identity_headers(self, caller: Caller | None) -> dict[str, str]:
        return self.assertions.headers_for(caller, time.time())

    async def pass_on(
        self, request: Request, path_and_query: str, caller: Caller | None
    ) -> Response:
        headers = proxy.upstream_headers(
            request,
            self.identity_headers(caller),
            self.client_ip(request),
            self.forwarded,
            self.config.private_cookies,
            self.upstream.netloc,
        )
        # The target goes out exactly as normalised and judged, under the upstream's own
        # path prefix: never re-quoted, so the upstream reads what the policy saw.
        target = self.upstream_prefix + path_and_query
        timeout = self.config.upstream_timeout
        if websocket.is_upgrade(request):
            return await websocket.bridge(request, self.upstream, target, headers, timeout)
        return await proxy.forward(request, self.upstream, target, headers, timeout)

    def client_ip(self, request: Request) -> str:
        """The peer, or the address the trusted proxies in front of us say they served."""
        trusted = self.config.settings.trusted_proxy_count
        if not trusted:
            return request.peer
        forwarded = [
            hop.strip()
            for value in request.header_values("x-forwarded-for")
            for hop in value.split(",")
        ]
        if len(forwarded) >= trusted:
            return forwarded[-trusted]
        return request.peer

    # --- sign-in and sign-out ----------------------------------------------------------------

    async def start_login(
        self, request: Request, return_to: str, prompt: str | None = None
    ) -> Response:
        login = Login.start()
        try:
            url = await self.idp.authorize_url(login, prompt=prompt)
            record = {"nonce": login.nonce, "verifier": login.verifier, "return_to": return_to}
            await self.store.put(LOGIN_PREFIX + login.state, json.dumps(record), LOGIN_SECONDS)
        except (StoreUnavailable, IdpError):
            return pages.problem(request, 503, "Sign-in is unavailable; try again soon.")
        response = pages.redirect(url)
        response.headers.append(
            set_cookie(
                STATE_COOKIE, login.state, max_age=LOGIN_SECONDS, path="/_bascule/callback",
                secure=self.config.secure_cookies,
            )
        )  # fmt: skip
        return response

    async def callback(self, request: Request) -> Response:
        query = request.query()
        if "error" in query:
            message = query.get("error_description") or query["error"]
            return pages.problem(request, 400, f"Sign-in did not complete: {message}")
        state, code = query.get("state", ""), query.get("code", "")
        bound = request.cookie(STATE_COOKIE) or ""
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
        secure = self.config.secure_cookies
        response.headers += [
            delete_cookie(STATE_COOKIE, path="/_bascule/callback", secure=secure),
            set_cookie(self.config.cookie_name, cookie, path="/", secure=secure),
        ]
        return response

    async def logout(self, request: Request) -> Response:
        """End the gateway session, then the IdP session (RP-initiated logout)."""
        cookie = sessions.parse_cookie(request.cookie(self.config.cookie_name))
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
        secure = self.config.secure_cookies
        response.headers.append(delete_cookie(self.config.cookie_name, path="/", secure=secure))
        return response

    async def backchannel_logout(self, request: Request) -> Response:
        body = await request.body.collect(MAX_FORM_BYTES)
        if body is None:
            return pages.problem(request, 413, "The form is too large.")
        token = dict(parse_qsl(body.decode("latin-1"))).get("logout_token")
        if not token:
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
        return Response(200, [("Cache-Control", "no-store")])

    # --- /_bascule/ -------------------------------------------------------------------------

    async def internal(self, request: Request, target: paths.Target) -> Response:
        route = INTERNAL.get((request.method, target.path))
        if route is None:
            return pages.problem(request, 404, "There is nothing at this address.")
        return await route(self, request)

    async def login(self, request: Request) -> Response:
        query = request.query()
        return_to = safe_next(query.get("rd"), self.config.public_url, default="/")
        prompt = "login" if query.get("reauth") == "1" else None
        return await self.start_login(request, return_to, prompt)

    async def forward_auth(self, request: Request) -> Response:
        """For nginx auth_request, Caddy forward_auth, Traefik forwardAuth: 200 with the
        identity headers, 401 (sign in) or 403 (denied); never a redirect (nginx turns a 3xx
        into a 500)."""
        first: dict[str, str] = {}  # the first value of each, in one pass over the headers
        for name, value in request.headers:
            if name in ORIGINAL_REQUEST_HEADERS and name not in first:
                first[name] = value
        uris = {first.get("x-original-uri"), first.get("x-forwarded-uri")} - {None}
        methods = {first.get("x-original-method"), first.get("x-forwarded-method")}
        methods.discard(None)
        if len(uris) > 1 or len({m.upper() for m in methods if m}) > 1:
            # A proxy that passes a client's own copy of one of them through must not let the
            # client choose what is judged: two different answers are refused.
            return text(403, "Refused: the original request is ambiguous.")
        raw_uri = next(iter(uris), "")
        method = (next(iter(methods), None) or "GET").upper()
        try:
            target = paths.normalise(raw_uri or "")
        except paths.AmbiguousPath as exc:
            return text(403, f"Refused: {exc.reason}.")
        verdict = await self.judge(request, method, target.path, self.client_ip(request))
        if isinstance(verdict, Response):
            return verdict
        decision, caller = verdict
        if decision.outcome is Outcome.ALLOW:
            return Response(200, list(self.identity_headers(caller).items()))
        if decision.outcome is Outcome.DENY:
            return text(403, f"You may not do this: {decision.reason}.")
        original = target.path + (f"?{target.query}" if target.query else "")
        query = {"rd": original}
        if decision.outcome is Outcome.STEP_UP:
            query["reauth"] = "1"  # the IdP session is live but not recent enough
        login = f"{self.config.public_url}/_bascule/login?{urlencode(query)}"
        body = f'<!doctype html><title>Sign in</title><p><a href="{login}">Sign in</a></p>'
        return text(401, body, "text/html; charset=utf-8", [("X-Bascule-Login", login)])

    async def healthz(self, _request: Request) -> Response:
        return text(200, json.dumps({"status": "ok"}), JSON)

    async def readyz(self, _request: Request) -> Response:
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            return text(503, json.dumps({"status": "unavailable", "store": str(exc)}), JSON)
        return text(200, json.dumps({"status": "ok"}), JSON)

    async def metrics(self, _request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(200, [("Content-Type", content_type)], body)


JSON = "application/json; charset=utf-8"
INTERNAL: dict[tuple[str, str], Callable[[Gateway, Request], Awaitable[Response]]] = {
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


async def _stylesheet() -> Response:
    return pages.stylesheet()


def create_app(settings: Settings | None = None, *, store_namespace: str = NAMESPACE) -> Gateway:
    """The gateway, for gateway.worker (gunicorn) to serve. Tests pass their own settings and
    the store namespace their IdP uses."""
    return Gateway(gateway_config.load(settings or load_settings()), store_namespace)
