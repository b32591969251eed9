"""Permission names and built-in roles: a contract (DESIGN.md) that the gateway shares."""

from __future__ import annotations

SETTINGS_MANAGE = "settings.manage"
BILLING_MANAGE = "billing.manage"
USER_DATA_READ = "user_data.read"
MESSAGES_SEND = "messages.send"
MESSAGES_EDIT = "messages.edit"
MEMBERS_MANAGE = "members.manage"
SECURITY_MANAGE = "security.manage"
AUDIT_READ = "audit.read"

DESCRIPTIONS: dict[str, str] = {
    SETTINGS_MANAGE: "Change the messaging app's settings",
    BILLING_MANAGE: "See and change billing",
    USER_DATA_READ: "Read and export members' user data",
    MESSAGES_SEND: "Send messages",
    MESSAGES_EDIT: "Edit messages",
    MEMBERS_MANAGE: "Invite, remove and change the roles of members",
    SECURITY_MANAGE: "Manage SSO, the 2FA policy, OIDC clients and keys",
    AUDIT_READ: "Read the audit log",
}

ALL: frozenset[str] = frozenset(DESCRIPTIONS)

ADMINISTRATIVE: frozenset[str] = frozenset({MEMBERS_MANAGE, SECURITY_MANAGE, AUDIT_READ})

BUILTIN_ROLES: dict[str, frozenset[str]] = {
    "owner": ALL,
    "admin": ALL - {BILLING_MANAGE},
    "member": frozenset({MESSAGES_SEND, MESSAGES_EDIT}),
    "viewer": frozenset(),
}


def parse(names: str) -> frozenset[str]:
    """Permissions from a comma-separated list; unknown names raise ValueError."""
    wanted = frozenset(n.strip() for n in names.split(",") if n.strip())
    unknown = wanted - ALL
    if unknown:
        raise ValueError(f"unknown permission(s): {', '.join(sorted(unknown))}")
    return wanted
