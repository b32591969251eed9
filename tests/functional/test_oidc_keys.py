"""Signing-key rotation and the keys at rest (issue 5, must-show 3).

After ``bascule keys rotate --signing`` a token signed before the rotation still verifies
against the JWKS, new tokens carry the new ``kid``, and the retired key leaves the JWKS once
every token it signed has expired. Private keys are sealed in the database: neither PEM nor
any private JWK member is ever stored in the clear.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from flask import Flask
from joserfc import jwk
from sqlalchemy import select, text

from idp.cli import main as bascule
from idp.cli import oidc as oidc_cli
from idp.common import gateway_key
from idp.common.signing import Signer
from idp.config import Settings
from idp.extensions import db
from idp.models import User
from idp.models.oidc import SigningKey
from idp.runtime import runtime
from idp.services.oidc import keys, logout, tokens
from tests.oidc_support import (
    RP,
    assert_invalid_token,
    audit_events,
    register,
    sign_in_tokens,
    userinfo,
    verify,
)
from tests.support import Browsers

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")
SECOND = timedelta(seconds=1)


@pytest.fixture
def settings(settings: Settings, keys_dir: Path, tmp_path: Path) -> Settings:
    """A rotation also writes the gateway's key into the keys folder: each test here gets its
    own copy of the folder (same data key), so no other test sees its keys change."""
    own = tmp_path / "keys"
    shutil.copytree(keys_dir, own)
    return dataclasses.replace(settings, keys_dir=own)


@pytest.fixture
def rps(app: Flask, base_url: str, jane: User) -> dict[str, RP]:
    """One client per ID token algorithm."""
    return {alg: register(app, base_url, alg, id_token_alg=alg) for alg in ("RS256", "ES256")}


def published(base_url: str) -> dict[str, dict[str, Any]]:
    return {k["kid"]: k for k in httpx.get(base_url + "/oauth2/jwks").json()["keys"]}


def kid(token: str, base_url: str) -> str:
    return str(verify(base_url, token).header["kid"])


def rotate_with_the_cli(app: Flask) -> list[str]:
    """``bascule keys rotate --signing --json``, run in this test's app."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(oidc_cli, "app_context", lambda: nullcontext(app))
        result = CliRunner().invoke(bascule, ["keys", "rotate", "--signing", "--json"])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout)["signing_keys"])


def test_tokens_signed_before_a_rotation_still_verify_and_new_ones_carry_the_new_kid(
    app: Flask, base_url: str, rps: dict[str, RP], browsers: Browsers
) -> None:
    browser = browsers.new()
    before = {alg: sign_in_tokens(browser, rp) for alg, rp in rps.items()}
    old = {alg: kid(issued.id_token, base_url) for alg, issued in before.items()}
    assert kid(before["RS256"].access, base_url) == old["RS256"]

    gateway_before = set(published(base_url)) - set(old.values())
    new = rotate_with_the_cli(app)  # RS256, ES256 and the gateway's assertion key
    assert len(new) == 3 and not set(new) & (set(old.values()) | gateway_before)
    [event] = audit_events("oidc.keys.rotate")
    assert set(event.details["retired"]) == set(old.values())
    assert set(event.details["new"]) == set(new)

    # Both generations are published; what the old keys signed still verifies, by anyone.
    assert set(published(base_url)) == set(old.values()) | set(new) | gateway_before
    for issued in before.values():
        verify(base_url, issued.id_token)
        verify(base_url, issued.access)
    assert userinfo(base_url, before["RS256"].access).status_code == 200

    # New tokens, from a new sign-in or a refresh of an old grant, carry the new kids.
    for alg, rp in rps.items():
        for body in (sign_in_tokens(browser, rp).body, rp.refresh(before[alg].refresh).json()):
            assert kid(body["id_token"], base_url) in new
            assert kid(body["id_token"], base_url) != old[alg]
            assert verify(base_url, body["id_token"]).header["alg"] == alg
            assert kid(body["access_token"], base_url) in new
            assert userinfo(base_url, body["access_token"]).status_code == 200


def test_retired_key_leaves_the_jwks_once_what_it_signed_has_expired(
    app: Flask, base_url: str, rps: dict[str, RP], browsers: Browsers
) -> None:
    # It outlives every token it signed: ID, access, logout tokens.
    longest = max(tokens.ID_TOKEN_SECONDS, tokens.ACCESS_TOKEN_SECONDS, logout.LOGOUT_TOKEN_SECONDS)
    assert timedelta(seconds=longest) < keys.PUBLISH_AFTER_RETIREMENT

    issued = sign_in_tokens(browsers.new(), rps["RS256"])
    old = kid(issued.access, base_url)
    new = keys.rotate()
    retired = list(db.session.scalars(select(SigningKey).where(SigningKey.retired_at.is_not(None))))
    assert {key.kid for key in retired} >= {old}
    rotated_at = {}
    for key in retired:
        assert key.retired_at is not None and key.retire_after is not None
        assert key.retire_after - key.retired_at == keys.PUBLISH_AFTER_RETIREMENT
        rotated_at[key.kid] = key.retired_at

    # keys.py reads the wall clock, not the injected one: time passes by moving the rotation
    # back, to a minute short of the publication period, then to a second past it.
    period = keys.PUBLISH_AFTER_RETIREMENT
    for ago, still_published in ((period - timedelta(minutes=1), True), (period + SECOND, False)):
        for key in retired:
            key.retired_at = rotated_at[key.kid] - ago
            key.retire_after = key.retired_at + period
        db.session.commit()
        keys.reload()
        assert (old in published(base_url)) is still_published
        assert set(new) <= set(published(base_url))
    assert_invalid_token(userinfo(base_url, issued.access))  # its key is gone


def test_a_worker_that_loaded_its_keys_before_a_rotation_accepts_the_new_kid(
    app: Flask, base_url: str, rps: dict[str, RP], browsers: Browsers
) -> None:
    """Another process rotated: this worker's key cache (CACHE_SECONDS) does not know the new
    key yet, and must look again rather than refuse the token."""
    url = runtime().settings.sqlalchemy_url
    stale = keys._loaded()
    [new_rsa] = [k for k in keys.rotate() if published(base_url)[k]["alg"] == "RS256"]
    fresh = sign_in_tokens(browsers.new(), rps["RS256"])
    assert kid(fresh.access, base_url) == new_rsa
    keys._cache[url] = stale  # as the other worker still has it
    assert userinfo(base_url, fresh.access).status_code == 200
    assert keys.signer("RS256").kid == new_rsa  # and it now signs with the new key too


def test_private_keys_are_sealed_at_rest_and_never_published(
    app: Flask, base_url: str, rps: dict[str, RP]
) -> None:
    keys.rotate()  # two generations
    rows: list[Any] = list(
        db.session.execute(
            text("SELECT kid, alg, sealed_private_key, public_jwk FROM oauth_signing_keys")
        )
    )
    assert len(rows) == 4
    keys_dir = runtime().settings.keys_dir
    gateway_file = json.loads((keys_dir / gateway_key.PRIVATE_FILE).read_text())
    public = gateway_key.public_keys(keys_dir)
    rows.append((gateway_file["kid"], "ES256", gateway_file["sealed"], public))
    keyring = runtime().keyring
    for row_kid, alg, sealed, public in rows:
        stored = sealed + (public if isinstance(public, str) else json.dumps(public))
        key = Signer.unseal(row_kid, alg, sealed, keyring).key
        private = key.as_dict(private=True)
        assert "d" in private
        for member in PRIVATE_MEMBERS:
            if member in private:
                assert str(private[member]) not in stored, (row_kid, member)
        pem = key.as_pem(private=True).decode()
        assert "PRIVATE KEY" not in stored
        assert all(line not in stored for line in pem.splitlines()[1:-1])
        assert sealed.split(".", 2)[1] in keyring.keys  # names the data key that sealed it

    for published_kid, key_json in published(base_url).items():
        assert not set(PRIVATE_MEMBERS) & set(key_json), published_kid
        assert key_json["use"] == "sig"
        assert published_kid == jwk.import_key(key_json).thumbprint()  # RFC 7638
