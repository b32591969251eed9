"""The account and role a validated assertion gives: created on the first sign-in (JIT), kept
up to date on every later one.

The IdP's NameID is linked to the account, so a later change of address at the IdP still
signs in the same person. An address outside the connection's domains is refused, and an
existing account is linked only if it already belongs to the connection's organisation: one
organisation's IdP cannot take over an account it never had. When the connection maps groups
to roles, the IdP decides the role on every sign-in (a group taken away is a role taken
away), except that the organisation's last owner is never demoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from idp.common import metrics
from idp.extensions import db
from idp.models import SamlConnection, SamlIdentity, User
from idp.services import audit, orgs, users
from idp.services.audit import Actor
from idp.services.errors import ServiceError
from idp.services.saml import login
from idp.services.saml.login import Assertion
from idp.services.saml.sp import SamlContext

# What an IdP's AuthnContextClassRef says, as RFC 8176 authentication methods. A federated
# sign-in is always "ext"; the IdP is trusted for its own people's second factor, never for
# a security key of ours.
_AC = "urn:oasis:names:tc:SAML:2.0:ac:classes:"
AUTHN_CONTEXT_AMR = {
    f"{_AC}Password": "pwd",
    f"{_AC}PasswordProtectedTransport": "pwd",
    f"{_AC}TimeSyncToken": "otp",
    f"{_AC}MobileTwoFactorContract": "mfa",
    f"{_AC}MobileTwoFactorUnregistered": "mfa",
    f"{_AC}Smartcard": "sc",
    f"{_AC}SmartcardPKI": "sc",
    "http://schemas.microsoft.com/claims/multipleauthn": "mfa",
    "https://refeds.org/profile/mfa": "mfa",
}


@dataclass(frozen=True)
class Profile:
    """The assertion read through the connection's attribute map."""

    email: str
    name: str
    groups: list[str]
    role: str


@dataclass(frozen=True)
class Outcome:
    user: User
    created: bool
    changes: dict[str, Any]


def amr(assertion: Assertion) -> list[str]:
    methods = ["ext"]
    for context in assertion.authn_contexts:
        method = AUTHN_CONTEXT_AMR.get(context)
        if method and method not in methods:
            methods.append(method)
    if "otp" in methods and "mfa" not in methods:
        methods.append("mfa")
    return methods


def profile(conn: SamlConnection, assertion: Assertion) -> Profile:
    """Email, name, groups and the role they map to."""
    names = conn.attribute_map

    def values(attribute: str) -> list[str]:
        return [v.strip() for v in assertion.attributes.get(names.get(attribute, ""), []) if v]

    email = next(iter(values("email")), "")
    if not email and "@" in assertion.name_id:
        email = assertion.name_id
    name = " ".join(next(iter(values(a)), "") for a in ("given_name", "family_name")).strip()
    groups = values("groups")
    return Profile(users.normalise_email(email), name[:200], groups, _role_for(conn, groups))


def preview(conn: SamlConnection, assertion: Assertion) -> dict[str, Any]:
    """What a sign-in with ``assertion`` would do, for the console's "test connection"."""
    seen = profile(conn, assertion)
    user = users.find_by_email(seen.email) if users.valid_email(seen.email) else None
    problem = _problem(conn, seen)
    return {
        "name_id": assertion.name_id,
        "name_id_format": assertion.name_id_format,
        "attributes": assertion.attributes,
        "authn_contexts": assertion.authn_contexts,
        "amr": amr(assertion),
        "email": seen.email,
        "name": seen.name,
        "groups": seen.groups,
        "role": seen.role,
        "account": "existing" if user else "would be created",
        "problem": problem,
    }


def provision(conn: SamlConnection, ctx: SamlContext, assertion: Assertion) -> Outcome:
    """The account to sign in, created or brought up to date; audited with what changed."""
    seen = profile(conn, assertion)
    problem = _problem(conn, seen)
    if problem:
        raise login.reject(conn, ctx, problem, _MESSAGES[problem])
    identity = db.session.scalar(
        select(SamlIdentity).where(
            SamlIdentity.connection_id == conn.id, SamlIdentity.name_id == assertion.name_id
        )
    )
    user = db.session.get(User, identity.user_id) if identity else users.find_by_email(seen.email)
    created, changes = False, {}
    if identity is None:
        if user is None:
            user, created = users.create_user(seen.email, seen.name), True
        elif orgs.membership(user, conn.org) is None:
            raise login.reject(conn, ctx, "account_not_member", _MESSAGES["account_not_member"])
        identity = SamlIdentity(connection_id=conn.id, name_id=assertion.name_id, user_id=user.id)
        db.session.add(identity)
    assert user is not None
    if not user.is_active:
        raise login.reject(conn, ctx, "disabled", _MESSAGES["disabled"])
    changes.update(_update_profile(user, seen))
    changes.update(_update_role(conn, user, seen.role))
    identity.last_login_at = datetime.fromtimestamp(ctx.now, UTC)
    audit.record(
        "saml.login",
        actor=Actor(user.id, user.email),
        org_id=conn.org_id,
        target=conn.slug,
        origin=ctx.origin,
        details={"created": created, "changes": changes, "amr": amr(assertion)},
        now=ctx.now,
    )
    metrics.SAML_RESULTS.labels("success").inc()
    return Outcome(user, created, changes)


_MESSAGES = {
    "no_email": "Your identity provider did not send an email address. Ask your administrator.",
    "foreign_domain": "Your identity provider sent an address this organisation does not own.",
    "account_not_member": "An account with your address already exists outside this "
    "organisation. Ask your administrator to invite it first.",
    "disabled": "This account is disabled. Ask your administrator.",
    "no_role": "The role your groups map to no longer exists. Ask your administrator.",
}


def _problem(conn: SamlConnection, seen: Profile) -> str | None:
    if not users.valid_email(seen.email):
        return "no_email"
    if seen.email.rpartition("@")[2] not in conn.domains:
        return "foreign_domain"
    if orgs.find_role(conn.org, seen.role) is None:
        return "no_role"
    return None


def _role_for(conn: SamlConnection, groups: list[str]) -> str:
    """The mapped role with the most permissions among the person's groups, else the default."""
    mapped = [conn.group_roles[g] for g in groups if g in conn.group_roles]
    if not mapped:
        return conn.default_role

    def weight(name: str) -> int:
        role = orgs.find_role(conn.org, name)
        return len(role.permissions) if role else -1

    return max(mapped, key=weight)


def _update_profile(user: User, seen: Profile) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if seen.name and user.name != seen.name:
        changes["name"] = {"before": user.name, "after": seen.name}
        user.name = seen.name
    if user.email != seen.email and users.find_by_email(seen.email) is None:
        changes["email"] = {"before": user.email, "after": seen.email}
        user.email = seen.email
    return changes


def _update_role(conn: SamlConnection, user: User, role_name: str) -> dict[str, Any]:
    role = orgs.get_role(conn.org, role_name)
    member = orgs.membership(user, conn.org)
    if member is None:
        orgs.add_member(user, conn.org, role)
        return {"role": {"before": None, "after": role.name}}
    if not conn.group_roles or member.role.name == role.name:
        return {}
    try:
        before = orgs.set_member_role(member, role)
    except ServiceError:
        return {"role_kept": {"role": member.role.name, "why": "last owner"}}
    return {"role": {"before": before, "after": role.name}}
