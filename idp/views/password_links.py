"""Forgotten passwords and invitations: both end with choosing a password through a link."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from idp.services import credentials, passwords, users
from idp.services.credentials import LinkExpired
from idp.views._context import credentials_context
from idp.views._helpers import field

bp = Blueprint("password_links", __name__)

LINK_KINDS = {"reset": "Choose a new password", "invite": "Welcome: choose your password"}


@bp.get("/password/forgot")
def forgot_form() -> str:
    return render_template("idp/forgot.html")


@bp.post("/password/forgot")
def forgot() -> str:
    email = field("email", users.MAX_EMAIL + 1)
    credentials.request_reset(credentials_context(), email)
    # The same page whether or not the address has an account: no enumeration.
    return render_template("idp/forgot_sent.html")


@bp.get("/password/reset/<token>")
def reset_form(token: str) -> tuple[str, int]:
    return _set_password_form("reset", token)


@bp.post("/password/reset/<token>")
def reset(token: str) -> tuple[str, int]:
    return _set_password("reset", token)


@bp.get("/invite/<token>")
def invite_form(token: str) -> tuple[str, int]:
    return _set_password_form("invite", token)


@bp.post("/invite/<token>")
def accept_invite(token: str) -> tuple[str, int]:
    return _set_password("invite", token)


def _set_password_form(kind: str, token: str) -> tuple[str, int]:
    try:
        user = credentials.link_user(credentials_context(), kind, token)
    except LinkExpired as exc:
        return render_template("idp/link_expired.html", message=str(exc)), 410
    return _page(kind, user.email), 200


def _set_password(kind: str, token: str) -> tuple[str, int]:
    password = field("password", passwords.MAX_LENGTH + 1)
    confirm = field("password_confirm", passwords.MAX_LENGTH + 1)
    ctx = credentials_context()
    try:
        user = credentials.link_user(ctx, kind, token)
        if password != confirm:
            return _page(kind, user.email, error="The two passwords are not the same."), 400
        credentials.complete_link(ctx, kind, token, password)
    except LinkExpired as exc:
        return render_template("idp/link_expired.html", message=str(exc)), 410
    except users.PasswordRejected as exc:
        violation = exc.violation
        return _page(kind, user.email, error=violation.reason, tips=violation.suggestions), 400
    return render_template("idp/password_set.html", email=user.email), 200


def _page(kind: str, email: str, error: str | None = None, tips: list[str] | None = None) -> str:
    return render_template(
        "idp/set_password.html",
        title=LINK_KINDS[kind],
        email=email,
        action=request.path,
        error=error,
        tips=tips or [],
    )
