"""The token side of the OpenID provider through the real HTTP stack: the token response,
refresh rotation, revocation (RFC 7009), introspection (RFC 7662), client credentials, client
authentication (secrets and RFC 7523 private_key_jwt), ES256 ID tokens, and access tokens that
die with what they stand for: the IdP session, the account, the consent. Each issuance,
refresh and revocation is checked in the audit log too."""

from __future__ import annotations

import time

import httpx
from flask import Flask
from joserfc import jwk

from idp.extensions import db
from idp.models import User
from idp.runtime import runtime
from idp.services import audit, users
from idp.services.oidc import consent, tokens
from tests.oidc_support import (
    RP,
    assert_invalid_token,
    audit_events,
    auth_request,
    authorize,
    code_for,
    is_consent_page,
    oauth_error,
    register,
    sign_in_tokens,
    userinfo,
    verify,
)
from tests.support import Browsers, post_form


def introspect(rp: RP, token: str, hint: str | None = None) -> dict[str, object]:
    answer = rp.introspect(token, hint)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_token_response_and_access_token_follow_rfc_6749_and_9068(
    rp: RP, jane: User, browsers: Browsers, clock
) -> None:
    request = auth_request(rp)
    issued = sign_in_tokens(browsers.new(), rp, request)
    assert issued.body["token_type"] == "Bearer"
    assert issued.body["expires_in"] == tokens.ACCESS_TOKEN_SECONDS
    assert issued.body["scope"] == request.params["scope"]
    assert issued.headers["cache-control"] == "no-store"
    assert issued.headers["pragma"] == "no-cache"

    access = verify(rp.base_url, issued.access)  # resource servers verify offline
    assert access.header["typ"] == "at+jwt" and access.header["alg"] == "RS256"
    found = access.claims
    assert (found["iss"], found["aud"]) == (rp.base_url, rp.base_url)
    assert (found["sub"], found["client_id"]) == (jane.id, rp.client_id)
    assert found["exp"] == found["iat"] + tokens.ACCESS_TOKEN_SECONDS == int(clock.now) + 300
    assert found["scope"] == request.params["scope"]
    assert found["jti"] and found["auth_time"] == int(clock.now) and found["sid"]

    [issue] = audit_events("oidc.token.issue")
    assert (issue.actor_id, issue.target) == (jane.id, rp.client_id)
    assert issue.details["grant_type"] == "authorization_code"


# --- refresh ------------------------------------------------------------------------------


def test_refresh_rotates_keeps_the_sign_in_and_never_widens(
    app: Flask, rp: RP, jane: User, browsers: Browsers, clock
) -> None:
    issued = sign_in_tokens(browsers.new(), rp)
    first_id = verify(rp.base_url, issued.id_token).claims
    clock.advance(60)
    answer = rp.refresh(issued.refresh)
    assert answer.status_code == 200
    body = answer.json()
    assert body["refresh_token"] != issued.refresh and body["access_token"] != issued.access
    # OpenID Connect Core 12.2: the same person and sign-in; no nonce this time.
    renewed = verify(rp.base_url, body["id_token"]).claims
    for name in ("iss", "sub", "aud", "auth_time", "amr"):
        assert renewed[name] == first_id[name], name
    assert renewed["iat"] == first_id["iat"] + 60
    assert "nonce" not in renewed

    # Narrower is allowed, wider is not; a refused refresh does not spend the token.
    narrower = rp.refresh(body["refresh_token"], scope="openid email")
    assert narrower.status_code == 200 and narrower.json()["scope"] == "openid email"
    assert "name" not in userinfo(rp.base_url, narrower.json()["access_token"]).json()
    latest = narrower.json()["refresh_token"]
    assert oauth_error(rp.refresh(latest, scope="openid permissions")) == "invalid_scope"
    # Another client's refresh token is not valid for this one, and is not spent by the try.
    other = register(app, rp.base_url, "Other RP")
    assert oauth_error(other.refresh(latest)) == "invalid_grant"
    assert rp.refresh(latest).status_code == 200

    refreshes = audit_events("oidc.token.refresh")
    assert len(refreshes) == 3
    assert {(e.actor_id, e.target) for e in refreshes} == {(jane.id, rp.client_id)}
    assert audit_events("oidc.grant.revoke") == []


def test_public_client_flow_refresh_and_revocation(
    app: Flask, base_url: str, jane: User, browsers: Browsers
) -> None:
    public = register(app, base_url, "SPA", public=True)
    assert public.secret is None
    issued = sign_in_tokens(browsers.new(), public)
    rotated = public.refresh(issued.refresh)
    assert rotated.status_code == 200
    assert public.revoke(rotated.json()["refresh_token"]).status_code == 200
    assert oauth_error(public.refresh(rotated.json()["refresh_token"])) == "invalid_grant"
    # A public client may not introspect: that needs client authentication.
    assert oauth_error(public.introspect(issued.access), 401) == "invalid_client"


# --- revocation (RFC 7009) and introspection (RFC 7662) ------------------------------------


def test_revoking_an_access_token_ends_it_alone(rp: RP, jane: User, browsers: Browsers) -> None:
    issued = sign_in_tokens(browsers.new(), rp)
    assert introspect(rp, issued.access)["active"] is True
    assert rp.revoke(issued.access, "access_token").status_code == 200
    assert_invalid_token(userinfo(rp.base_url, issued.access))
    assert introspect(rp, issued.access) == {"active": False}
    assert rp.refresh(issued.refresh).status_code == 200  # the grant lives on

    [event] = audit_events("oidc.token.revoke")
    assert (event.actor_id, event.target) == (jane.id, rp.client_id)
    assert event.details["jti"] == verify(rp.base_url, issued.access).claims["jti"]


def test_revoking_a_refresh_token_ends_its_whole_grant(
    app: Flask, rp: RP, jane: User, browsers: Browsers
) -> None:
    issued = sign_in_tokens(browsers.new(), rp)
    assert introspect(rp, issued.refresh, "refresh_token")["active"] is True
    assert rp.revoke(issued.refresh, "refresh_token").status_code == 200
    assert oauth_error(rp.refresh(issued.refresh)) == "invalid_grant"
    assert_invalid_token(userinfo(rp.base_url, issued.access))
    assert introspect(rp, issued.refresh, "refresh_token") == {"active": False}
    [event] = audit_events("oidc.grant.revoke")
    assert (event.outcome, event.details["reason"]) == ("success", "client_revoked")

    # Unknown tokens, and another client's, are answered 200 and left alone (RFC 7009 2.2).
    other = register(app, rp.base_url, "Other RP")
    mine = sign_in_tokens(browsers.new(), rp)
    assert rp.revoke("no-such-token").status_code == 200
    assert other.revoke(mine.access).status_code == 200
    assert other.revoke(mine.refresh).status_code == 200
    assert userinfo(rp.base_url, mine.access).status_code == 200
    assert rp.refresh(mine.refresh).status_code == 200


def test_introspection_says_what_a_resource_server_needs_and_only_to_whom_it_may(
    app: Flask, rp: RP, jane: User, browsers: Browsers
) -> None:
    partner = register(app, rp.base_url, "Partner", first_party=False)
    issued = sign_in_tokens(browsers.new(), rp)
    found = introspect(rp, issued.access)
    assert found["active"] is True and found["token_type"] == "Bearer"
    assert (found["sub"], found["client_id"], found["iss"]) == (jane.id, rp.client_id, rp.base_url)
    assert found["scope"] == issued.body["scope"] and isinstance(found["exp"], int)
    refresh = introspect(rp, issued.refresh, "refresh_token")
    assert refresh["token_type"] == "refresh_token" and refresh["client_id"] == rp.client_id

    # A third-party client sees only its own tokens; the first-party gateway sees any.
    assert introspect(partner, issued.access) == {"active": False}
    assert introspect(partner, issued.refresh) == {"active": False}
    partners = sign_in_tokens(browsers.new(), partner)
    assert introspect(partner, partners.access)["active"] is True
    assert introspect(rp, partners.access)["active"] is True


# --- client credentials and client authentication ------------------------------------------


def test_client_credentials(app: Flask, base_url: str) -> None:
    service = register(
        app, base_url, "Batch job", first_party=False, grant_types=["client_credentials"]
    )
    answer = service.post("/oauth2/token", {"grant_type": "client_credentials", "scope": "email"})
    assert answer.status_code == 200
    body = answer.json()
    assert "refresh_token" not in body and "id_token" not in body
    claims = verify(base_url, body["access_token"]).claims
    assert (claims["sub"], claims["client_id"], claims["scope"]) == (
        service.client_id, service.client_id, "email",
    )  # fmt: skip
    assert "sid" not in claims and "auth_time" not in claims
    assert introspect(service, body["access_token"])["active"] is True
    assert_invalid_token(userinfo(base_url, body["access_token"]))  # nobody to describe

    openid = service.post("/oauth2/token", {"grant_type": "client_credentials", "scope": "openid"})
    assert openid.json()["scope"] == "" and "id_token" not in openid.json()
    bogus = service.post("/oauth2/token", {"grant_type": "client_credentials", "scope": "admin"})
    assert oauth_error(bogus) == "invalid_scope"
    [event] = audit_events("oidc.token.issue")[:1]
    assert event.actor_email == f"client:{service.client_id}"
    assert event.details == {"grant_type": "client_credentials"}

    code_only = register(app, base_url, "Web app")
    refused = code_only.post("/oauth2/token", {"grant_type": "client_credentials"})
    assert oauth_error(refused) == "unauthorized_client"


def test_client_secret_post_and_wrong_secrets(
    app: Flask, base_url: str, jane: User, browsers: Browsers
) -> None:
    poster = register(app, base_url, "Poster", auth_method="client_secret_post")
    issued = sign_in_tokens(browsers.new(), poster)
    assert issued.access
    refresh = {"grant_type": "refresh_token", "refresh_token": issued.refresh}
    wrong = httpx.post(
        base_url + "/oauth2/token",
        data=refresh | {"client_id": poster.client_id, "client_secret": "wrong"},
    )
    assert oauth_error(wrong, 401) == "invalid_client"
    # Registered for client_secret_post: the right secret in a Basic header is not accepted.
    basic = httpx.post(
        base_url + "/oauth2/token", data=refresh, auth=(poster.client_id, poster.secret or "")
    )
    assert oauth_error(basic, 401) == "invalid_client"
    other = register(app, base_url, "Other RP")
    borrowed = httpx.post(
        base_url + "/oauth2/token", data=refresh, auth=(poster.client_id, other.secret or "")
    )
    assert oauth_error(borrowed, 401) == "invalid_client"
    assert poster.refresh(issued.refresh).status_code == 200  # none of that spent it


def test_private_key_jwt_client_authentication(
    app: Flask, base_url: str, jane: User, browsers: Browsers
) -> None:
    rp = register(app, base_url, "Signed RP", auth_method="private_key_jwt")
    assert rp.secret is None and rp.key is not None
    issued = sign_in_tokens(browsers.new(), rp)  # the code exchange, with an assertion
    assert verify(base_url, issued.id_token).claims["aud"] == rp.client_id

    replayed = rp.assertion()
    refresh = {"grant_type": "refresh_token", "refresh_token": issued.refresh}
    answer = rp.post("/oauth2/token", refresh | {"client_assertion": replayed})
    assert answer.status_code == 200
    refresh["refresh_token"] = answer.json()["refresh_token"]
    refused = {
        "replayed jti": replayed,
        "another key": rp.assertion(key=jwk.RSAKey.generate_key(2048, auto_kid=True)),
        "expired": rp.assertion(exp=int(time.time()) - 120),
        "other audience": rp.assertion(aud="https://elsewhere.test/token"),
        "iss is not sub": rp.assertion(iss="someone-else"),
        "no jti": rp.assertion(jti=None),
        "no exp": rp.assertion(exp=None),
        "unsigned": rp.assertion().rsplit(".", 1)[0] + ".",
        "garbage": "not.a.jwt",
    }
    for name, assertion in refused.items():
        answer = rp.post("/oauth2/token", refresh | {"client_assertion": assertion})
        assert answer.status_code in (400, 401), (name, answer.status_code, answer.text)
        assert answer.json()["error"] == "invalid_client", name
    # It has no secret: Basic with anything is refused.
    basic = httpx.post(base_url + "/oauth2/token", data=refresh, auth=(rp.client_id, "x"))
    assert oauth_error(basic, 401) == "invalid_client"
    assert rp.post("/oauth2/token", refresh).status_code == 200  # none of that spent it


# --- ES256 ----------------------------------------------------------------------------------


def test_es256_id_tokens_when_the_client_asks(
    app: Flask, base_url: str, jane: User, browsers: Browsers
) -> None:
    rp = register(app, base_url, "EC RP", id_token_alg="ES256")
    issued = sign_in_tokens(browsers.new(), rp)
    token = verify(base_url, issued.id_token)
    assert token.header["alg"] == "ES256"
    published = {k["kid"]: k for k in httpx.get(base_url + "/oauth2/jwks").json()["keys"]}
    assert published[token.header["kid"]]["kty"] == "EC"
    assert published[token.header["kid"]]["crv"] == "P-256"
    assert verify(base_url, issued.access).header["alg"] == "RS256"  # access tokens: one alg
    renewed = rp.refresh(issued.refresh).json()["id_token"]
    assert verify(base_url, renewed).header["alg"] == "ES256"


# --- access tokens die with what they stand for ---------------------------------------------


def test_tokens_bound_to_the_session_die_with_it_and_offline_ones_do_not(
    rp: RP, browsers: Browsers
) -> None:
    browser = browsers.new()
    online = sign_in_tokens(browser, rp, auth_request(rp, scope="openid email"))
    offline = sign_in_tokens(browser, rp)  # offline_access
    pending = auth_request(rp)
    code = code_for(browser, rp, pending)  # not yet exchanged
    assert post_form(browser, "/logout", {}, page=browser.get("/account").text).status_code == 302

    assert oauth_error(rp.exchange(code, pending.verifier)) == "invalid_grant"  # nobody behind it

    for issued in (online, offline):  # access tokens name the session: both end now
        assert_invalid_token(userinfo(rp.base_url, issued.access))
        assert introspect(rp, issued.access) == {"active": False}
    assert oauth_error(rp.refresh(online.refresh)) == "invalid_grant"
    assert introspect(rp, online.refresh) == {"active": False}
    reasons = {e.details["reason"] for e in audit_events("oidc.grant.revoke")}
    assert reasons == {"session_ended"}

    renewed = rp.refresh(offline.refresh)  # offline access outlives the session
    assert renewed.status_code == 200
    assert userinfo(rp.base_url, renewed.json()["access_token"]).status_code == 200


def test_tokens_die_when_the_account_is_disabled(app: Flask, rp: RP, jane: User, browsers) -> None:
    issued = sign_in_tokens(browsers.new(), rp)
    renewed = rp.refresh(issued.refresh).json()  # offline grant: not bound to the session
    users.set_active(jane, False, store=runtime().store, actor=audit.ANONYMOUS, origin=audit.CLI)
    db.session.commit()

    for access in (issued.access, renewed["access_token"]):
        assert_invalid_token(userinfo(rp.base_url, access))
        assert introspect(rp, access) == {"active": False}
    assert oauth_error(rp.refresh(renewed["refresh_token"])) == "invalid_grant"

    # Enabling the account again does not revive what was issued before it was disabled.
    users.set_active(jane, True, store=runtime().store, actor=audit.ANONYMOUS, origin=audit.CLI)
    db.session.commit()
    assert oauth_error(rp.refresh(renewed["refresh_token"])) == "invalid_grant"
    assert "user_disabled" in {e.details["reason"] for e in audit_events("oidc.grant.revoke")}


def test_withdrawn_consent_ends_that_clients_tokens_only(
    app: Flask, base_url: str, jane: User, browsers: Browsers
) -> None:
    partner = register(app, base_url, "Partner", first_party=False)
    other = register(app, base_url, "Other partner", first_party=False)
    browser = browsers.new()
    theirs, kept = sign_in_tokens(browser, partner), sign_in_tokens(browser, other)

    consent.revoke(jane, partner.client_id, audit.CLI)
    db.session.commit()
    assert_invalid_token(userinfo(base_url, theirs.access))
    assert oauth_error(partner.refresh(theirs.refresh)) == "invalid_grant"
    assert userinfo(base_url, kept.access).status_code == 200
    assert other.refresh(kept.refresh).status_code == 200

    [withdrawn] = audit_events("oidc.consent.revoke")
    assert (withdrawn.actor_id, withdrawn.target) == (jane.id, partner.client_id)
    [ended] = audit_events("oidc.grant.revoke")
    assert (ended.target, ended.details["reason"]) == (partner.client_id, "consent_revoked")
    # And the next sign-in to it asks again.
    assert is_consent_page(authorize(browser, auth_request(partner), consent=None))
