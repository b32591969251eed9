"""Typed SQLAlchemy models: data only, rules live in ``idp.services``."""

from idp.models.api_token import ApiToken
from idp.models.audit import AuditEvent, AuditHead
from idp.models.factors import RecoveryCode, TotpFactor, WebAuthnCredential
from idp.models.oidc import (
    AuthorizationCode,
    Consent,
    OAuthClient,
    RefreshToken,
    SigningKey,
    TokenGrant,
)
from idp.models.org import Membership, Organisation, Role, RolePermission
from idp.models.saml import SamlConnection, SamlIdentity
from idp.models.user import PasswordHistory, User

__all__ = [
    "ApiToken",
    "AuditEvent",
    "AuditHead",
    "AuthorizationCode",
    "Consent",
    "Membership",
    "OAuthClient",
    "Organisation",
    "PasswordHistory",
    "RecoveryCode",
    "RefreshToken",
    "Role",
    "RolePermission",
    "SamlConnection",
    "SamlIdentity",
    "SigningKey",
    "TokenGrant",
    "TotpFactor",
    "User",
    "WebAuthnCredential",
]
