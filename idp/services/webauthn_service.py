"""WebAuthn (security keys and passkeys) behind plain functions of our own.

py_webauthn does the cryptography. What it leaves to us, done here:

- Challenges live server-side in the shared store under a random handle, are taken (deleted)
  before the response is checked and expire after a few minutes: a captured response cannot
  be replayed, and a failed attempt cannot be retried with the same challenge.
- The origin and RP ID come from ``BASCULE_ISSUER`` only, never from request headers, so a
  phishing site on another origin gets responses that do not verify.
- User verification is decided per ceremony: required for passkey sign-in (the key then stands
  for two factors), preferred where it only adds to a password.
- Sign counts: the library skips its check when both counts are 0 and, when it does check,
  refuses before verifying the signature. We verify the signature first, then refuse any
  count that does not go up (unless both are 0), so only a genuinely signed response with a
  stale count (a cloned key) is reported as one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from idp.common.store import Store
from idp.config import Settings
from idp.extensions import db
from idp.models import User, WebAuthnCredential
from idp.services import one_time
from idp.services.errors import ServiceError

CHALLENGE_SECONDS = 300
TIMEOUT_MS = 120_000
MAX_NAME = 64
MAX_RESPONSE_CHARS = 64 * 1024


class WebAuthnFailed(ServiceError):
    """The response did not verify: wrong origin, stale or reused challenge, bad signature."""


class CloneSuspected(WebAuthnFailed):
    """The signature is right but the sign count went backwards: two copies of one key."""

    def __init__(self, stored: int, received: int) -> None:
        super().__init__("This security key could not be accepted.")
        self.stored, self.received = stored, received


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    origin: str


def relying_party(settings: Settings) -> RelyingParty:
    """RP ID is the issuer's host name; the only origin accepted is the issuer itself."""
    return RelyingParty(
        id=urlsplit(settings.issuer).hostname or "localhost", name="Bascule", origin=settings.issuer
    )


# --- challenges ------------------------------------------------------------------------------


def _keep_challenge(
    store: Store, ceremony: str, uid: str | None, challenge: bytes, now: float
) -> str:
    payload = {"ceremony": ceremony, "uid": uid, "challenge": bytes_to_base64url(challenge)}
    return one_time.issue(store, "webauthn", payload, CHALLENGE_SECONDS, now)


def _take_challenge(
    store: Store, handle: str | None, ceremony: str, uid: str | None, now: float
) -> bytes:
    """The challenge issued for this ceremony and user, removed from the store as it is read."""
    payload = one_time.consume(store, "webauthn", handle, now) if handle else None
    if payload is None or payload.get("ceremony") != ceremony or payload.get("uid") != uid:
        raise WebAuthnFailed("This request has expired. Try again.")
    return base64url_to_bytes(str(payload["challenge"]))


# --- registration ----------------------------------------------------------------------------


def _descriptor(credential: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in credential.transports or []:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue  # a transport this library version does not know; the browser will cope
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(credential.credential_id), transports=transports or None
    )


def credentials_of(user: User) -> list[WebAuthnCredential]:
    return list(
        db.session.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user.id)
            .order_by(WebAuthnCredential.created_at, WebAuthnCredential.id)
        )
    )


def registration_options(
    rp: RelyingParty, store: Store, user: User, now: float
) -> tuple[dict[str, Any], str]:
    """Options for ``navigator.credentials.create`` and the handle of their challenge."""
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        # The user handle is the random, stable account id: it carries no personal data.
        user_id=user.id.encode(),
        user_name=user.email,
        user_display_name=user.name or user.email,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        # The browser refuses to register the same authenticator twice for this account.
        exclude_credentials=[_descriptor(c) for c in credentials_of(user)],
    )
    handle = _keep_challenge(store, "register", user.id, options.challenge, now)
    return json.loads(options_to_json(options)), handle


def clean_name(name: str, fallback: str) -> str:
    """A label a person gave the key: printable, trimmed, at most 64 characters."""
    text = "".join(ch for ch in name if ch.isprintable()).strip()[:MAX_NAME]
    return text or fallback


def register(
    rp: RelyingParty,
    store: Store,
    user: User,
    handle: str | None,
    response: Any,
    name: str,
    now: float,
) -> WebAuthnCredential:
    """Verify an attestation and keep the new credential. The caller commits."""
    challenge = _take_challenge(store, handle, "register", user.id, now)
    _check_size(response)
    try:
        verified = verify_registration_response(
            credential=response,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=False,
        )
    except WebAuthnException as exc:
        raise WebAuthnFailed("The security key's answer could not be verified.") from exc
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.session.scalar(
        select(WebAuthnCredential.id).where(WebAuthnCredential.credential_id == credential_id)
    ):
        raise WebAuthnFailed("This security key is already registered.")
    transports = response["response"].get("transports")
    if not isinstance(transports, list):
        transports = []
    credential = WebAuthnCredential(
        user_id=user.id,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[str(t)[:16] for t in transports if isinstance(t, str)][:8],
        name=clean_name(name, f"Security key {len(credentials_of(user)) + 1}"),
        aaguid=verified.aaguid[:36],
        multi_device=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        created_at=datetime.fromtimestamp(now, UTC),
    )
    db.session.add(credential)
    return credential


# --- authentication --------------------------------------------------------------------------


def authentication_options(
    rp: RelyingParty, store: Store, user: User | None, now: float
) -> tuple[dict[str, Any], str]:
    """Options for ``navigator.credentials.get``: the user's keys as a second factor, or, with
    no user, any discoverable credential (passkey sign-in) with user verification required."""
    if user is None:
        options = generate_authentication_options(
            rp_id=rp.id,
            timeout=TIMEOUT_MS,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        handle = _keep_challenge(store, "passkey", None, options.challenge, now)
    else:
        options = generate_authentication_options(
            rp_id=rp.id,
            timeout=TIMEOUT_MS,
            allow_credentials=[_descriptor(c) for c in credentials_of(user)],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        handle = _keep_challenge(store, "second_factor", user.id, options.challenge, now)
    return json.loads(options_to_json(options)), handle


@dataclass(frozen=True)
class Assertion:
    credential: WebAuthnCredential
    user_verified: bool


def find_credential(response: Any) -> WebAuthnCredential | None:
    """The stored credential a response names (by its id), or None."""
    try:
        parsed = parse_authentication_credential_json(response)
    except (WebAuthnException, ValueError, TypeError, AttributeError):
        return None
    credential_id = bytes_to_base64url(parsed.raw_id)
    return db.session.scalar(
        select(WebAuthnCredential).where(WebAuthnCredential.credential_id == credential_id)
    )


def authenticate(
    rp: RelyingParty,
    store: Store,
    handle: str | None,
    response: Any,
    user: User | None,
    now: float,
) -> Assertion:
    """Verify an assertion; for passkey sign-in pass ``user=None``. The caller commits.

    Returns the credential used (its count and last use updated). Raises WebAuthnFailed, or
    CloneSuspected when a correctly signed response carries a sign count that did not go up.
    """
    ceremony = "passkey" if user is None else "second_factor"
    challenge = _take_challenge(store, handle, ceremony, user.id if user else None, now)
    _check_size(response)
    credential = find_credential(response)
    if credential is None or (user is not None and credential.user_id != user.id):
        raise WebAuthnFailed("This security key is not registered for this account.")
    parsed = parse_authentication_credential_json(response)
    user_handle = parsed.response.user_handle
    if user_handle is not None and user_handle != credential.user_id.encode():
        # A discoverable credential names its account; it must be the one we stored it for.
        raise WebAuthnFailed("This security key is not registered for this account.")
    try:
        verified = verify_authentication_response(
            credential=response,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=credential.public_key,
            # 0 on purpose: the library would refuse a stale count before checking the
            # signature; we check the count ourselves below, after the signature is proven.
            credential_current_sign_count=0,
            require_user_verification=user is None,
        )
    except WebAuthnException as exc:
        raise WebAuthnFailed("The security key's answer could not be verified.") from exc
    stored, received = credential.sign_count, verified.new_sign_count
    if (stored > 0 or received > 0) and received <= stored:
        raise CloneSuspected(stored, received)
    credential.sign_count = received
    credential.last_used_at = datetime.fromtimestamp(now, UTC)
    return Assertion(credential, verified.user_verified)


def _check_size(response: Any) -> None:
    if not isinstance(response, dict) or len(json.dumps(response)) > MAX_RESPONSE_CHARS:
        raise WebAuthnFailed("The security key's answer could not be read.")


# --- management ------------------------------------------------------------------------------


def get_own(user: User, credential_id: int) -> WebAuthnCredential | None:
    credential = db.session.get(WebAuthnCredential, credential_id)
    return credential if credential is not None and credential.user_id == user.id else None


def amr_value(credential: WebAuthnCredential) -> str:
    """RFC 8176: "hwk" for a key bound to one device, "swk" for a synced (multi-device) one."""
    return "swk" if credential.multi_device else "hwk"
