"""Members: invite, resend an invitation, change role, disable, enable, remove, sign out, and
reset second factors (for someone who lost both their factor and their recovery codes)."""

from __future__ import annotations

from flask import flash
from werkzeug.wrappers import Response

from idp.extensions import db
from idp.models import User
from idp.services import authz, members, mfa, roles, users
from idp.services.authz import Principal
from idp.services.errors import ServiceError
from idp.views._context import credentials_context
from idp.views._helpers import field, login_required
from idp.views.admin._common import (
    REFUSALS,
    bp,
    one_click,
    page_number,
    principal,
    refused,
    render,
    see_other,
    sentence,
)

LIST = "admin.members_page"


@bp.get("/members")
@login_required
def members_page(user: User) -> str:
    return _page(principal(user))


@bp.post("/members/invite")
@login_required
def invite(user: User) -> tuple[str, int] | Response:
    acting = principal(user)
    typed = {
        "email": field("email", users.MAX_EMAIL + 1),
        "name": field("name", 200, required=False),
        "role": field("role", 63),
    }
    try:
        member, link = members.invite(
            acting, credentials_context(), typed["email"], typed["role"], typed["name"]
        )
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        return _page(acting, error=sentence(exc), typed=typed), 400
    email, role = member.user.email, member.role.name
    if link:
        flash(f"{email} was invited as {role}. The invitation was also mailed.", "notice")
        flash(link, "invite_link")
    else:
        flash(f"{email} already had an account and was added as {role}.", "notice")
    return see_other(LIST)


@bp.post("/members/<int:member_id>/resend")
@login_required
def resend_invitation(user: User, member_id: int) -> Response:
    acting = principal(user)
    try:
        link = members.resend_invitation(acting, credentials_context(), member_id)
    except REFUSALS:
        raise
    except ServiceError as exc:
        return refused(exc, LIST)
    flash("A new invitation was mailed. Earlier links keep working until they expire.", "notice")
    flash(link, "invite_link")
    return see_other(LIST)


@bp.post("/members/<int:member_id>/role")
@login_required
def change_role(user: User, member_id: int) -> Response:
    acting = principal(user)
    role = field("role", 63)
    who = _email(acting, member_id)
    return one_click(
        lambda: members.change_role(acting, credentials_context(), member_id, role),
        f"{who} now has the role {role}, from their next request on.",
        LIST,
    )


@bp.post("/members/<int:member_id>/disable")
@login_required
def disable(user: User, member_id: int) -> Response:
    acting = principal(user)
    who = _email(acting, member_id)
    return one_click(
        lambda: members.set_active(acting, credentials_context(), member_id, False),
        f"{who} is disabled: signed out everywhere, and cannot sign in until enabled again.",
        LIST,
    )


@bp.post("/members/<int:member_id>/enable")
@login_required
def enable(user: User, member_id: int) -> Response:
    acting = principal(user)
    who = _email(acting, member_id)
    return one_click(
        lambda: members.set_active(acting, credentials_context(), member_id, True),
        f"{who} is enabled again and can sign in.",
        LIST,
    )


@bp.post("/members/<int:member_id>/revoke-sessions")
@login_required
def revoke_sessions(user: User, member_id: int) -> Response:
    acting = principal(user)
    who = _email(acting, member_id)
    ended = members.revoke_sessions(acting, credentials_context(), member_id)
    flash(f"{who} was signed out everywhere ({ended} session(s) ended).", "notice")
    return see_other(LIST)


@bp.get("/members/<int:member_id>/remove")
@login_required
def confirm_remove(user: User, member_id: int) -> str:
    """Removal cannot be undone with one click, so it asks first (a page, not a script)."""
    acting = principal(user)
    return render("remove_member.html", acting, member=members.get_member(acting, member_id))


@bp.post("/members/<int:member_id>/remove")
@login_required
def remove(user: User, member_id: int) -> Response:
    acting = principal(user)
    who = _email(acting, member_id)
    return one_click(
        lambda: members.remove(acting, credentials_context(), member_id),
        f"{who} was removed from {acting.org.name}.",
        LIST,
    )


@bp.get("/members/<int:member_id>/factors/reset")
@login_required
def confirm_reset_factors(user: User, member_id: int) -> str:
    """A reset weakens the member's sign-in to a password alone, so it asks first, saying so."""
    acting = principal(user)
    member = members.get_member(acting, member_id)
    return render("reset_factors.html", acting, member=member, factors=mfa.status(member.user))


@bp.post("/members/<int:member_id>/factors/reset")
@login_required
def reset_factors(user: User, member_id: int) -> Response:
    acting = principal(user)
    who = _email(acting, member_id)
    removed = mfa.reset_factors(acting, credentials_context(), member_id)
    flash(
        f"The second factors of {who} were reset: {_removed(removed)}. They can sign in with "
        "their password and set up a new factor on their account page; if your organisation "
        "requires two-factor authentication, their next sign-in asks them to set one up first.",
        "notice",
    )
    return see_other(LIST)


def _removed(removed: dict[str, int]) -> str:
    """The service's counts in words, so the admin sees what the member lost:
    ``{"totp": 1, "security_keys": 0, "recovery_codes": 10}`` → "1 authenticator app and 10
    recovery codes removed"."""
    names = {
        "totp": ("authenticator app", "authenticator apps"),
        "security_keys": ("security key", "security keys"),
        "recovery_codes": ("recovery code", "recovery codes"),
    }
    parts = [f"{count} {names[kind][count != 1]}" for kind, count in removed.items() if count]
    if not parts:
        return "they had none"
    listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    return f"{listed} removed"


def _email(acting: Principal, member_id: int) -> str:
    """Whom an action is about, for its status message (the lookup is checked too)."""
    return members.get_member(acting, member_id).user.email


def _page(acting: Principal, error: str | None = None, typed: dict[str, str] | None = None) -> str:
    listing = members.list_members(acting, page=page_number())
    return render(
        "members.html",
        acting,
        listing=listing,
        roles=roles.list_roles(acting),
        mine=authz.permissions_of(acting),
        with_factor=mfa.with_second_factor([m.user_id for m in listing.items]),
        error=error,
        typed=typed or {"role": "member"},
    )
