"""Roles: the built-in ones to read, custom ones to create, edit (a permission checklist that
explains each permission) and delete when nobody holds them."""

from __future__ import annotations

from flask import abort, flash, request
from werkzeug.wrappers import Response

from idp.common.permissions import BUILTIN_ROLES
from idp.extensions import db
from idp.models import User
from idp.services import authz, roles
from idp.services.authz import Principal
from idp.services.errors import ServiceError
from idp.views._context import credentials_context
from idp.views._helpers import field, login_required
from idp.views.admin._common import REFUSALS, bp, principal, refused, render, see_other, sentence

LIST = "admin.roles_page"
MAX_PERMISSIONS_IN_FORM = 50


@bp.get("/roles")
@login_required
def roles_page(user: User) -> str:
    return _list_page(principal(user))


@bp.post("/roles")
@login_required
def create_role(user: User) -> tuple[str, int] | Response:
    acting = principal(user)
    name = field("name", 63).strip()
    granted = _checked()
    try:
        roles.create(acting, credentials_context(), name, granted)
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        return _list_page(acting, error=sentence(exc), name=name, checked=granted), 400
    flash(f"The role {name} was created. Give it to members on the Members page.", "notice")
    return see_other(LIST)


@bp.get("/roles/<int:role_id>")
@login_required
def edit_role(user: User, role_id: int) -> str:
    return _role_page(principal(user), role_id)


@bp.post("/roles/<int:role_id>")
@login_required
def update_role(user: User, role_id: int) -> tuple[str, int] | Response:
    acting = principal(user)
    granted = _checked()
    try:
        role = roles.set_permissions(acting, credentials_context(), role_id, granted)
    except REFUSALS:
        raise
    except ServiceError as exc:
        db.session.rollback()
        return _role_page(acting, role_id, error=sentence(exc), checked=granted), 400
    flash(f"The role {role.name} was saved. Its members have the new permissions now.", "notice")
    return see_other(LIST)


@bp.post("/roles/<int:role_id>/delete")
@login_required
def delete_role(user: User, role_id: int) -> Response:
    acting = principal(user)
    try:
        roles.delete(acting, credentials_context(), role_id)
    except REFUSALS:
        raise
    except ServiceError as exc:
        return refused(exc, LIST)
    flash("The role was deleted.", "notice")
    return see_other(LIST)


def _checked() -> frozenset[str]:
    names = request.form.getlist("permissions")
    if len(names) > MAX_PERMISSIONS_IN_FORM or any(len(n) > 63 for n in names):
        abort(400, description="The list of permissions is not valid.")
    return frozenset(names)


def _list_page(
    acting: Principal,
    error: str | None = None,
    name: str = "",
    checked: frozenset[str] = frozenset(),
) -> str:
    # Built-in roles from the most to the least powerful, then custom roles by name.
    rank = {name: n for n, name in enumerate(BUILTIN_ROLES)}
    role_list = sorted(
        roles.list_roles(acting), key=lambda r: (rank.get(r.name, 99) if r.builtin else 99, r.name)
    )
    return render(
        "roles.html",
        acting,
        roles=role_list,
        holders={role.id: roles.members_holding(role) for role in role_list},
        mine=authz.permissions_of(acting),
        error=error,
        name=name,
        checked=checked,
    )


def _role_page(
    acting: Principal,
    role_id: int,
    error: str | None = None,
    checked: frozenset[str] | None = None,
) -> str:
    role = roles.get_role(acting, role_id)
    return render(
        "role.html",
        acting,
        role=role,
        holders=roles.members_holding(role),
        mine=authz.permissions_of(acting),
        checked=role.permissions if checked is None else checked,
        error=error,
    )
