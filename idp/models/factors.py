"""Second factors: a TOTP seed, WebAuthn credentials and recovery codes (data only).

The rules (replay refusal, sign-count checks, single use) live in ``idp.services.mfa`` and the
modules it calls; these classes only say what is kept and in which form.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db
from idp.models._types import UtcDateTime, utcnow


class TotpFactor(db.Model):  # type: ignore[name-defined,misc]
    """One authenticator-app seed per user, stored once a first correct code confirmed it."""

    __tablename__ = "totp_factors"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    # The base32 seed sealed with AES-256-GCM (idp.common.sealing), never in the clear: a copy
    # of the database alone cannot mint codes.
    secret_sealed: Mapped[str] = mapped_column(String(255))
    # The newest 30-second step accepted; a code for this step or an older one is a replay.
    last_used_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class WebAuthnCredential(db.Model):  # type: ignore[name-defined,misc]
    """A security key or passkey registered by a user, with the name they gave it."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # base64url
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    name: Mapped[str] = mapped_column(String(64))
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    # Backup-eligible ("multi-device", synced) credentials are reported as software keys.
    multi_device: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class RecoveryCode(db.Model):  # type: ignore[name-defined,misc]
    """One single-use recovery code, kept only as a keyed hash (see services/recovery_codes)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(String(32))  # which data key the HMAC key came from
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
