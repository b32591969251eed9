"""The pages. Each view parses its input, calls the store, then renders or redirects.

Every view but the health check sits behind ``guard``, which verifies the assertion, checks the
permission the page needs and, for a POST, the CSRF token, and hands the view the ``Caller``.
The gateway's policy already checked the same permissions (``gateway/demo_policy.toml``); the
app checks them again so that a mistake in the policy, or a request that reaches the app without
the gateway, does not open it. The two lists are compared by ``tests/examples``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec

from flask import Blueprint, Response, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from examples.messaging import rules
from examples.messaging.assertion import (
    HEADER,
    AssertionVerifier,
    Caller,
    InvalidAssertion,
    KeysUnavailable,
)
from examples.messaging.csrf import FIELD, CsrfGuard, CsrfRefused
from examples.messaging.store import PAGE_SIZE, Store

SETTINGS_MANAGE = "settings.manage"
BILLING_MANAGE = "billing.manage"
USER_DATA_READ = "user_data.read"
MESSAGES_SEND = "messages.send"
MESSAGES_EDIT = "messages.edit"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GUARD_MARK = "required_permission"  # set on every guarded view; app.py refuses unguarded ones
LOGOUT_PATH = "/_bascule/logout"  # the gateway's; it ends the gateway and the IdP session

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")

log = logging.getLogger(__name__)
P = ParamSpec("P")
View = Callable[Concatenate[Caller, P], ResponseReturnValue]


@dataclass(frozen=True, slots=True)
class Context:
    """What the views need, built once by ``create_app``."""

    verifier: AssertionVerifier
    csrf: CsrfGuard
    store: Store
    gateway_url: str


def blueprint(ctx: Context) -> Blueprint:
    """The app's pages, closed over ``ctx``: no module-level app or globals to import."""
    bp = Blueprint("messaging", __name__)

    def guard(permission: str | None) -> Callable[[View[P]], Callable[P, ResponseReturnValue]]:
        """Admit a request only with a verified assertion, ``permission`` (None: any caller)
        and, unless the method is safe, a CSRF token of the caller's session."""

        def wrap(view: View[P]) -> Callable[P, ResponseReturnValue]:
            @functools.wraps(view)
            def guarded(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
                try:
                    caller = ctx.verifier.verify(request.headers.get(HEADER))
                except InvalidAssertion as exc:
                    log.warning("refused %s %s: %s", request.method, request.path, exc)
                    return not_through_gateway()
                except KeysUnavailable as exc:
                    log.error("cannot verify %s %s: %s", request.method, request.path, exc)
                    return error(None, 503, "Cannot check who you are", "unavailable")
                ctx.store.seen(caller.org, caller.sub, caller.email)
                if permission is not None and not caller.can(permission):
                    return error(caller, 403, "Not allowed", "forbidden", permission=permission)
                if request.method not in SAFE_METHODS:
                    try:
                        ctx.csrf.check(
                            caller, request.form.get(FIELD), request.headers.get("Sec-Fetch-Site")
                        )
                    except CsrfRefused as exc:
                        log.warning("refused %s %s: %s", request.method, request.path, exc)
                        return error(caller, 403, "Form refused", "csrf")
                return view(caller, *args, **kwargs)

            setattr(guarded, GUARD_MARK, permission)  # app.py refuses to start with unmarked views
            return guarded

        return wrap

    def page(caller: Caller | None, template: str, status: int = 200, **values: object) -> Response:
        """A page with the header bar: who is signed in and what they may open."""
        html = render_template(
            template,
            caller=caller,
            csrf_token=ctx.csrf.token(caller) if caller else None,
            workspace=ctx.store.settings(caller.org) if caller else None,
            logout_url=LOGOUT_PATH,
            gateway_url=ctx.gateway_url,
            **values,
        )
        return make_response(html, status)

    def error(
        caller: Caller | None, status: int, title: str, kind: str, **values: object
    ) -> Response:
        return page(caller, "error.html", status, title=title, kind=kind, **values)

    def not_through_gateway() -> Response:
        response = error(None, 401, "Open this app through the gateway", "unauthenticated")
        realm = ctx.verifier.audience.replace('"', "")
        response.headers["WWW-Authenticate"] = f'Bascule-Assertion realm="{realm}"'
        return response

    def inbox_page(caller: Caller, status: int = 200, **values: object) -> Response:
        before = request.args.get("before", type=int)
        messages = ctx.store.messages(caller.org, before)
        older = messages[-1].id if len(messages) == PAGE_SIZE else None
        return page(caller, "inbox.html", status, messages=messages, older=older, **values)

    @bp.get("/")
    @bp.get("/inbox")
    @guard(None)
    def inbox(caller: Caller) -> ResponseReturnValue:
        return inbox_page(caller)

    @bp.post("/messages")
    @guard(MESSAGES_SEND)
    def send(caller: Caller) -> ResponseReturnValue:
        try:
            body = rules.message_body(request.form)
        except rules.Invalid as exc:
            return inbox_page(caller, 400, problem=str(exc), draft=request.form.get("body", ""))
        message_id = ctx.store.send(caller.org, caller.sub, caller.email, body)
        return redirect(url_for(".inbox", _anchor=f"m{message_id}"), 303)

    @bp.get("/messages/<int:message_id>")
    @guard(None)
    def show(caller: Caller, message_id: int) -> ResponseReturnValue:
        message = ctx.store.message(caller.org, message_id)
        if message is None:
            return error(caller, 404, "No such message", "not_found")
        return page(caller, "message.html", message=message, edited="edited" in request.args)

    @bp.route("/messages/<int:message_id>/edit", methods=["GET", "POST"])
    @guard(MESSAGES_EDIT)
    def edit(caller: Caller, message_id: int) -> ResponseReturnValue:
        message = ctx.store.message(caller.org, message_id)
        if message is None:
            return error(caller, 404, "No such message", "not_found")
        if request.method == "GET":
            return page(caller, "edit.html", message=message, draft=message.body)
        try:
            body = rules.message_body(request.form)
        except rules.Invalid as exc:
            draft = request.form.get("body", "")
            return page(caller, "edit.html", 400, message=message, draft=draft, problem=str(exc))
        ctx.store.edit(caller.org, message_id, body, caller.email)
        return redirect(url_for(".show", message_id=message_id, edited=1), 303)

    @bp.route("/settings", methods=["GET", "POST"])
    @guard(SETTINGS_MANAGE)
    def settings(caller: Caller) -> ResponseReturnValue:
        if request.method == "GET":
            current = ctx.store.settings(caller.org)
            return page(caller, "settings.html", form=current, saved="saved" in request.args)
        try:
            wanted = rules.settings(request.form)
        except rules.Invalid as exc:
            return page(caller, "settings.html", 400, form=request.form, problem=str(exc))
        ctx.store.save_settings(caller.org, wanted)
        return redirect(url_for(".settings", saved=1), 303)

    def billing_page(caller: Caller, status: int = 200, **values: object) -> Response:
        current = ctx.store.billing(caller.org)
        members = len(ctx.store.members(caller.org))
        return page(
            caller,
            "billing.html",
            status,
            billing=current,
            plans=rules.PLANS,
            members=members,
            cost=rules.monthly_cost(current.plan, members),
            **values,
        )

    @bp.get("/billing")
    @guard(BILLING_MANAGE)
    def billing(caller: Caller) -> ResponseReturnValue:
        return billing_page(caller, changed="changed" in request.args)

    @bp.post("/billing/plan")
    @guard(BILLING_MANAGE)
    def change_plan(caller: Caller) -> ResponseReturnValue:
        try:
            plan = rules.plan(request.form, ctx.store.members(caller.org))
        except rules.Invalid as exc:
            return billing_page(caller, 400, problem=str(exc))
        ctx.store.set_plan(caller.org, plan, caller.email)
        return redirect(url_for(".billing", changed=1), 303)

    @bp.get("/members")
    @guard(USER_DATA_READ)
    def members(caller: Caller) -> ResponseReturnValue:
        return page(caller, "members.html", members=ctx.store.members(caller.org))

    @bp.get("/members/export.json")
    @guard(USER_DATA_READ)
    def export(caller: Caller) -> ResponseReturnValue:
        """Everything the app holds about the organisation's members, as one JSON document."""
        document = {
            "org": caller.org,
            "exported_at": int(time.time()),
            "exported_by": caller.email,
            "members": [
                {
                    "sub": member.sub,
                    "email": member.email,
                    "first_seen": member.first_seen,
                    "last_seen": member.last_seen,
                    "messages": [
                        {
                            "id": m.id,
                            "body": m.body,
                            "created_at": m.created_at,
                            "edited_at": m.edited_at,
                            "edited_by": m.edited_by,
                        }
                        for m in ctx.store.messages_by(caller.org, member.sub)
                    ],
                }
                for member in ctx.store.members(caller.org)
            ],
        }
        response = Response(json.dumps(document, indent=2), mimetype="application/json")
        filename = "members-" + _UNSAFE_FILENAME.sub("_", caller.org) + ".json"
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    return bp
