"""The organisation admin console under /admin: overview, members, roles, settings, OIDC
clients, SAML single sign-on, audit log."""

from __future__ import annotations

from idp.models import User
from idp.runtime import runtime
from idp.services import admin_overview, mfa_policy
from idp.views._helpers import login_required, principal_for
from idp.views.admin import audit, clients, members, roles, settings, sso
from idp.views.admin._common import bp, principal, render

__all__ = ["audit", "bp", "clients", "members", "roles", "settings", "sso"]


@bp.app_template_global()
def shows_admin_link(user: User | None) -> bool:
    """Whether the header offers "Admin": only to holders of an administrative permission."""
    acting = principal_for(user) if user is not None else None
    return acting is not None and bool(admin_overview.administrative_permissions(acting))


@bp.get("")
@login_required
def overview(user: User) -> str:
    acting = principal(user)
    return render(
        "overview.html",
        acting,
        summary=admin_overview.summary(acting, runtime().clock()),
        policy_descriptions=mfa_policy.DESCRIPTIONS,
    )
