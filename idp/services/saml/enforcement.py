"""When SSO is enforced, a password is not enough for addresses on the organisation's domains.

Owners may keep a break-glass password (the connection's ``owner_break_glass``), so a broken
IdP cannot lock the organisation out; each such sign-in is audited by the caller.
"""

from __future__ import annotations

from idp.models import SamlConnection, User
from idp.services import orgs
from idp.services.saml import connections


def enforced_connection(email: str) -> SamlConnection | None:
    """The connection that enforces SSO for ``email``'s domain, if any."""
    conn = connections.for_domain(email.rpartition("@")[2])
    return conn if conn is not None and conn.enforce_sso else None


def break_glass_allowed(conn: SamlConnection, user: User | None) -> bool:
    if user is None or not conn.owner_break_glass:
        return False
    member = orgs.membership(user, conn.org)
    return member is not None and member.role.name == "owner"
