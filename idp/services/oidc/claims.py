"""What each scope reveals about a user, in ID tokens and at UserInfo."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from idp.extensions import db
from idp.models import Organisation, User
from idp.services import active_org

SCOPES = ("openid", "profile", "email", "offline_access", "permissions")
CLAIMS = (
    "sub", "name", "preferred_username", "email", "email_verified", "org", "permissions",
    "auth_time", "amr", "acr", "sid",
)  # fmt: skip
# What each scope lets an application see, in the words of the consent page.
SCOPE_TEXT = {
    "openid": "Confirm who you are",
    "profile": "Your name",
    "email": "Your email address",
    "offline_access": "Stay connected while you are away (refresh without signing in)",
    "permissions": "Your organisation and your permissions in it",
}
# Authentication context classes (acr): one factor, or several.
ACR_SINGLE = "1"
ACR_MULTI = "2"


def acr(amr: list[str]) -> str:
    return ACR_MULTI if "mfa" in amr else ACR_SINGLE


def for_scope(user: User, org_id: str | None, scope: str) -> dict[str, Any]:
    """The user's claims that ``scope`` allows; ``sub`` is the stable id, never the email."""
    granted = set(scope.split())
    found: dict[str, Any] = {}
    if "profile" in granted:
        found["name"] = user.name or user.email.split("@", 1)[0]
        found["preferred_username"] = user.email
    if "email" in granted:
        # Addresses are proven by the invitation or reset link before an account can sign in.
        found["email"] = user.email
        found["email_verified"] = user.password_hash is not None
    if "permissions" in granted:
        org = db.session.get(Organisation, org_id) if org_id else None
        found["org"] = org.slug if org else None
        found["permissions"] = sorted(active_org.held_in(user, org_id)) if org else []
    return found


def half_hash(token: str) -> str:
    """``at_hash``: the left half of the token's SHA-256, base64url (RS256 and ES256 both
    hash with SHA-256)."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).decode().rstrip("=")
