"""Security keys and passkeys: the rules and the audit around ``webauthn_service``.

Registration needs a recent sign-in; use as a second factor shares the code throttle; a
correctly signed response with a stale sign count is reported as a possible clone; a failed
passkey sign-in is audited without an account (none is known yet).
"""

from __future__ import annotations

from typing import Any

from idp.extensions import db
from idp.models import User, WebAuthnCredential
from idp.services import audit, mfa, throttle, webauthn_service
from idp.services.errors import NotFound
from idp.services.mfa import Context
from idp.services.webauthn_service import CloneSuspected, WebAuthnFailed


def registration_options(
    ctx: Context, user: User, auth_time: float | None
) -> tuple[dict[str, Any], str]:
    mfa.require_recent_audited(ctx, user, "mfa.webauthn.register", auth_time)
    return webauthn_service.registration_options(ctx.rp, ctx.store, user, ctx.now)


def register(
    ctx: Context, user: User, handle: str | None, response: Any, name: str
) -> tuple[WebAuthnCredential, list[str] | None]:
    """Keep a new key; returns it and, on a first factor, new recovery codes."""
    event = "mfa.webauthn.register"
    try:
        credential = webauthn_service.register(
            ctx.rp, ctx.store, user, handle, response, name, ctx.now
        )
        db.session.flush()
    except WebAuthnFailed as exc:
        db.session.rollback()
        mfa.record(ctx, user, event, "failure", reason=str(exc), cause=_cause(exc))
        raise
    codes = mfa.first_factor_codes(ctx, user)
    mfa.record(
        ctx,
        user,
        event,
        credential=credential.id,
        name=credential.name,
        aaguid=credential.aaguid,
        recovery_codes_issued=codes is not None,
    )
    return credential, codes


def _cause(exc: BaseException) -> str:
    """The library's own message, for the operator reading the audit log."""
    return str(exc.__cause__ or exc)[:200]


def login_options(ctx: Context, user: User | None) -> tuple[dict[str, Any], str]:
    return webauthn_service.authentication_options(ctx.rp, ctx.store, user, ctx.now)


def authenticate(
    ctx: Context, handle: str | None, response: Any, user: User | None
) -> webauthn_service.Assertion:
    """Second factor (``user`` given) or passkey sign-in (``user`` None); audited either way."""
    event = "login.passkey" if user is None else "login.second_factor"
    if user is not None:
        mfa.check_throttle(ctx, user, event)
    try:
        assertion = webauthn_service.authenticate(
            ctx.rp, ctx.store, handle, response, user, ctx.now
        )
        db.session.flush()
    except CloneSuspected as exc:
        db.session.rollback()
        owner = db.session.get(User, _owner_id(response)) if user is None else user
        audit.record(
            "mfa.webauthn.clone_suspected",
            outcome="failure",
            actor=mfa.actor(owner) if owner else audit.ANONYMOUS,
            origin=ctx.origin,
            details={"stored_count": exc.stored, "received_count": exc.received},
            now=ctx.now,
        )
        raise
    except WebAuthnFailed as exc:
        if user is None:
            db.session.rollback()
            audit.record(
                event,
                outcome="failure",
                origin=ctx.origin,
                details={"reason": str(exc), "cause": _cause(exc)},
                now=ctx.now,
            )
        else:
            mfa.count_failure(ctx, user, event, str(exc), method="webauthn", cause=_cause(exc))
        raise
    owner = db.session.get(User, assertion.credential.user_id)
    assert owner is not None
    mfa.record(
        ctx,
        owner,
        event,
        method="webauthn",
        credential=assertion.credential.id,
        user_verified=assertion.user_verified,
    )
    if user is not None:
        throttle.register_success(ctx.store, mfa.throttle_key(user))
    return assertion


def _owner_id(response: Any) -> str | None:
    credential = webauthn_service.find_credential(response)
    return credential.user_id if credential else None


def rename(ctx: Context, user: User, credential_id: int, name: str) -> None:
    credential = webauthn_service.get_own(user, credential_id)
    if credential is None:
        raise NotFound("That security key is not registered for your account.")
    before = credential.name
    credential.name = webauthn_service.clean_name(name, before)
    after = credential.name
    mfa.record(
        ctx, user, "mfa.webauthn.rename", credential=credential.id, before=before, after=after
    )


def remove(ctx: Context, user: User, credential_id: int, auth_time: float | None) -> None:
    event = "mfa.webauthn.remove"
    mfa.require_recent_audited(ctx, user, event, auth_time)
    credential = webauthn_service.get_own(user, credential_id)
    if credential is None:
        raise NotFound("That security key is not registered for your account.")
    others = len(webauthn_service.credentials_of(user)) - 1
    has_totp = mfa.status(user).totp
    mfa.keep_one_if_required(ctx, user, event, others + has_totp)
    name = credential.name
    db.session.delete(credential)
    db.session.flush()
    dropped = mfa.drop_codes_if_last(user)
    mfa.record(
        ctx, user, event, credential=credential_id, name=name, recovery_codes_dropped=dropped
    )
