"""Flask's ``session`` backed by our server-side sessions (see services/sessions.py)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from idp.runtime import Runtime
from idp.services import sessions
from idp.services.sessions import SessionRecord


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """The session's free-form data, plus the record that says who is signed in."""

    def __init__(self, record: SessionRecord, token: str | None) -> None:
        def on_update(_: Any) -> None:
            self.modified = True

        super().__init__(record.data, on_update)
        self.record = record
        self.token = token
        self.ended: tuple[str, str | None] | None = None  # (sid, uid) of a session replaced
        self.stored = token is not None  # the record exists in the store already
        self.issue_cookie = False
        self.destroyed = False
        self.modified = False

    @property
    def sid(self) -> str | None:
        return sessions.session_id(self.token) if self.token else None

    def rotate(self) -> None:
        """A fresh secret under the same id: at sign-in and privilege change, against session
        fixation. Applications bound to the session id stay signed in."""
        self.token = sessions.rotated(self.token) if self.token else sessions.new_token()
        self.issue_cookie = True
        self.modified = True

    def sign_in(
        self,
        uid: str,
        org_id: str | None,
        amr: list[str],
        now: float,
        limits: sessions.Limits | None = None,
    ) -> None:
        """Become ``uid``'s session under a new secret; ``limits`` are the organisation's.

        Another user's session is ended, not taken over: the new user gets a new session id,
        so nothing bound to the old one (OIDC grants, the gateway) carries over.
        """
        if self.token and self.record.uid not in (None, uid):
            self.ended = (sessions.session_id(self.token), self.record.uid)
            self.token, self.stored = None, False
        self.rotate()
        self.record.uid, self.record.org_id = uid, org_id
        self.record.auth_time, self.record.amr = now, amr
        self.record.created = now
        self.apply_limits(limits)

    def apply_limits(self, limits: sessions.Limits | None) -> None:
        """Hold this session to an organisation's limits (at sign-in and when switching)."""
        self.record.idle_seconds = limits.idle_seconds if limits else None
        self.record.absolute_seconds = limits.absolute_seconds if limits else None
        self.modified = True
        self.pop("csrf_token", None)  # a form token from before sign-in is not reused after

    def destroy(self) -> None:
        self.destroyed = True


class StoreSessionInterface(SessionInterface):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        rt = self.runtime
        now = rt.clock()
        token = request.cookies.get(rt.session_cookie_name)
        record = sessions.load(rt.store, token, now, rt.session_limits) if token else None
        if record is None:
            record = SessionRecord(created=now, last_seen=now)
            token = None
        record.ip = request.remote_addr
        record.user_agent = (request.user_agent.string or "")[:512] or None
        return ServerSession(record, token)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        rt = self.runtime
        cookie = rt.session_cookie_name
        secure = not rt.settings.is_dev
        if session.ended:
            sessions.destroy(rt.store, *session.ended)
        if session.destroyed:
            if session.sid:
                sessions.destroy(rt.store, session.sid, session.record.uid)
            response.delete_cookie(cookie, path="/", secure=secure, httponly=True, samesite="Lax")
            return
        if session.token is None:
            if not session.modified:
                return  # an anonymous visit that stored nothing costs no store write
            session.token = sessions.new_token()
            session.issue_cookie = True
        now = rt.clock()
        record = session.record
        stale = now - record.last_seen > sessions.TOUCH_INTERVAL_SECONDS
        if session.modified or session.issue_cookie or stale:
            record.data = dict(session)
            record.last_seen = now
            new = not session.stored
            if not sessions.save(rt.store, session.token, record, now, rt.session_limits, new=new):
                # Revoked while this request ran: it stays ended, and so does the cookie.
                response.delete_cookie(
                    cookie, path="/", secure=secure, httponly=True, samesite="Lax"
                )
                return
        if session.issue_cookie:
            response.set_cookie(
                cookie, session.token, path="/", secure=secure, httponly=True, samesite="Lax"
            )
