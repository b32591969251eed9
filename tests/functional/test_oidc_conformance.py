"""The OpenID provider against the negative tests of the OpenID Foundation conformance suite's
Basic OP plan (oidcc-*), through the real HTTP stack. Each test asserts the answer the specs
require: HTTP status, ``error`` code, and whether it goes back to the client by redirect (with
``state`` and ``iss``) or stays on our error page because the client is not to be trusted.

RFCs: 6749 (OAuth 2.0), 6750 (bearer tokens), 7636 (PKCE), 9207 (``iss``), 9700 (security BCP);
OpenID Connect Core 1.0 and Discovery 1.0.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest
from flask import Flask
from joserfc import jwk, jwt

from idp.models import User
from idp.services.oidc import tokens
from tests.oidc_support import (
    JANE,
    RP,
    answer_consent,
    assert_error_page,
    assert_invalid_token,
    audit_events,
    auth_request,
    authorize,
    callback,
    code_for,
    error_redirect,
    is_consent_page,
    navigate,
    oauth_error,
    register,
    sign_in_tokens,
    userinfo,
    verify,
)
from tests.support import Browsers


@pytest.fixture
def third_party(app: Flask, base_url: str, jane: User) -> RP:
    return register(app, base_url, "Partner App", first_party=False)


def get_authorize(browser: httpx.Client, **params: str) -> httpx.Response:
    return browser.get("/oauth2/authorize", params=params)


# --- discovery -----------------------------------------------------------------------------


def test_discovery_lists_exactly_what_is_supported_and_every_endpoint_answers(
    app: Flask, base_url: str, rp: RP
) -> None:
    response = httpx.get(base_url + "/.well-known/openid-configuration")
    assert response.status_code == 200
    found = response.json()
    assert found["issuer"] == base_url
    assert found["response_types_supported"] == ["code"]
    assert found["response_modes_supported"] == ["query"]
    assert found["grant_types_supported"] == [
        "authorization_code", "refresh_token", "client_credentials",
    ]  # fmt: skip
    assert found["code_challenge_methods_supported"] == ["S256"]
    assert found["subject_types_supported"] == ["public"]
    assert found["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert found["scopes_supported"] == [
        "openid", "profile", "email", "offline_access", "permissions",
    ]  # fmt: skip
    assert set(found["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt", "none",
    }  # fmt: skip
    assert "none" not in found["introspection_endpoint_auth_methods_supported"]
    assert found["prompt_values_supported"] == ["consent", "login", "none", "select_account"]
    assert found["authorization_response_iss_parameter_supported"] is True
    assert found["backchannel_logout_supported"] is True
    assert found["backchannel_logout_session_supported"] is True
    for unsupported in ("request_parameter_supported", "request_uri_parameter_supported"):
        assert found[unsupported] is False
    assert found["claims_parameter_supported"] is False

    endpoints = {k: v for k, v in found.items() if k.endswith("_endpoint") or k == "jwks_uri"}
    assert set(endpoints) == {
        "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
        "end_session_endpoint", "revocation_endpoint", "introspection_endpoint",
    }  # fmt: skip
    assert all(url.startswith(base_url + "/") for url in endpoints.values()), endpoints
    # Every endpoint answers in its own way, none with 404 or 5xx.
    assert_error_page(httpx.get(endpoints["authorization_endpoint"]))
    assert oauth_error(httpx.post(endpoints["token_endpoint"])) == "unsupported_grant_type"
    assert_invalid_token(httpx.get(endpoints["userinfo_endpoint"]))
    assert httpx.get(endpoints["end_session_endpoint"]).status_code == 200
    for name in ("revocation_endpoint", "introspection_endpoint"):
        answer = httpx.post(endpoints[name], data={"token": "x"})
        assert oauth_error(answer, 401) == "invalid_client"
    published = httpx.get(endpoints["jwks_uri"]).json()["keys"]
    assert {key["alg"] for key in published} == set(found["id_token_signing_alg_values_supported"])
    for key in published:
        assert key["use"] == "sig" and key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "a private member is published"


# --- the redirect URI and the client: never redirect to what is not proven -----------------


def test_unproven_client_or_redirect_uri_gets_the_error_page_and_no_redirect(
    rp: RP, browsers: Browsers
) -> None:
    bad: list[dict[str, str | None]] = [
        {"redirect_uri": None},  # missing: OpenID Connect requires it in every request
        {"redirect_uri": "https://evil.test/callback"},  # unknown
        {"redirect_uri": "http://localhost:3000/callback/extra"},  # registered one plus a path
        {"redirect_uri": "http://localhost:3000/callback?x=1"},  # oidcc-redirect-uri-query-added
        {"redirect_uri": "http://localhost:3000/Callback"},  # case changed
        {"redirect_uri": "http://localhost:3001/callback"},  # another port
        {"redirect_uri": "http://localhost:3000/callback#frag"},
        {"redirect_uri": "http://localhost:3000/" + "x" * 5000},  # oversized
        {"client_id": None},
        {"client_id": "no-such-client"},
        {"client_id": "x" * 5000},
    ]
    anonymous, signed_in = browsers.new(), browsers.signed_in()
    for params in bad:
        request = auth_request(rp, **params)
        for browser in (anonymous, signed_in):  # checked before any decision about the user
            answer = get_authorize(browser, **request.params)
            assert answer.status_code == 400, params
            assert_error_page(answer)


def test_registered_redirect_uri_with_a_query_must_match_it_exactly(
    app: Flask, base_url: str, jane: User, browsers: Browsers
) -> None:
    registered = "http://localhost:3000/callback?tenant=a"
    rp = register(app, base_url, redirect_uris=[registered])
    browser = browsers.signed_in()
    ok = authorize(browser, auth_request(rp, redirect_uri=registered))
    assert ok.headers["location"].startswith(registered + "&code=")  # oidcc-redirect-uri-query-OK
    mismatch = auth_request(rp, redirect_uri="http://localhost:3000/callback?tenant=b")
    assert_error_page(get_authorize(browser, **mismatch.params))


# --- the authorization code --------------------------------------------------------------


def test_code_reuse_is_refused_and_revokes_the_tokens_of_its_first_use(
    rp: RP, browsers: Browsers, clock
) -> None:
    """oidcc-codereuse and oidcc-codereuse-30seconds."""
    request = auth_request(rp)
    code = code_for(browsers.new(), rp, request)
    first = rp.exchange(code, request.verifier)
    assert first.status_code == 200
    issued = first.json()
    assert userinfo(rp.base_url, issued["access_token"]).status_code == 200

    assert oauth_error(rp.exchange(code, request.verifier)) == "invalid_grant"
    assert_invalid_token(userinfo(rp.base_url, issued["access_token"]))
    assert oauth_error(rp.refresh(issued["refresh_token"])) == "invalid_grant"
    clock.advance(30)
    assert oauth_error(rp.exchange(code, request.verifier)) == "invalid_grant"

    replays = audit_events("oidc.code.replay")
    assert [(e.outcome, e.target) for e in replays] == [("failure", rp.client_id)] * 2
    [revoked] = audit_events("oidc.grant.revoke")  # once, though replayed twice
    assert revoked.details["reason"] == "code_replay"
    assert revoked.details["grant_id"] == replays[0].details["grant_id"]


def test_code_is_bound_to_its_client_and_redirect_uri_and_lives_a_minute(
    app: Flask, base_url: str, jane: User, browsers: Browsers, clock
) -> None:
    second = "http://localhost:3000/other"
    rp = register(app, base_url, redirect_uris=["http://localhost:3000/callback", second])
    other = register(app, base_url, "Other RP")
    request = auth_request(rp)
    code = code_for(browsers.new(), rp, request)
    assert oauth_error(other.exchange(code, request.verifier)) == "invalid_grant"
    assert oauth_error(rp.exchange(code, request.verifier, redirect_uri=second)) == "invalid_grant"
    clock.advance(tokens.CODE_SECONDS)
    assert oauth_error(rp.exchange(code, request.verifier)) == "invalid_grant"


# --- PKCE (RFC 7636, S256 only) ------------------------------------------------------------


@pytest.mark.parametrize("public", [False, True])
def test_pkce_wrong_verifier_is_invalid_grant_and_missing_is_invalid_request(
    app: Flask, base_url: str, jane: User, browsers: Browsers, public: bool
) -> None:
    rp = register(app, base_url, public=public)
    request = auth_request(rp)
    code = code_for(browsers.new(), rp, request)
    assert oauth_error(rp.exchange(code, "w" * 43)) == "invalid_grant"
    assert oauth_error(rp.exchange(code, None)) == "invalid_request"
    assert oauth_error(rp.exchange(code, "short")) == "invalid_request"
    assert rp.exchange(code, request.verifier).status_code == 200  # refusals did not spend it


# --- malformed authorization requests: errors sent back to the (proven) client -------------

REFUSED_BY_REDIRECT: list[tuple[str, dict[str, str | None]]] = [
    # PKCE: S256 only and required; a missing method would mean plain.
    ("invalid_request", {"code_challenge_method": "plain"}),
    ("invalid_request", {"code_challenge_method": None}),
    ("invalid_request", {"code_challenge": None, "code_challenge_method": None}),
    ("invalid_request", {"code_challenge": None}),
    ("invalid_request", {"code_challenge": "c" * 200}),
    ("invalid_request", {"code_challenge_method": "S512"}),
    # Implicit and hybrid flows are refused; only the code flow exists.
    ("unsupported_response_type", {"response_type": "token"}),
    ("unsupported_response_type", {"response_type": "id_token"}),
    ("unsupported_response_type", {"response_type": "id_token token"}),
    ("unsupported_response_type", {"response_type": "code id_token"}),
    ("unsupported_response_type", {"response_type": "code token"}),
    ("unsupported_response_type", {"response_type": None}),  # oidcc-response-type-missing
    ("invalid_scope", {"scope": "openid bogus"}),
    ("invalid_scope", {"scope": "openid admin"}),
    ("invalid_scope", {"scope": "openid profile\x00"}),
    ("request_not_supported", {"request": "eyJhbGciOiJub25lIn0.e30."}),
    ("request_uri_not_supported", {"request_uri": "https://evil.test/request.jwt"}),
    ("invalid_request", {"prompt": "bogus"}),
    ("invalid_request", {"prompt": "none login"}),
    ("invalid_request", {"max_age": "-1"}),
    ("invalid_request", {"max_age": "1e3"}),
    ("invalid_request", {"nonce": "n" * 600}),  # longer than we keep
]


def test_malformed_authorization_requests_are_refused_by_redirect(
    rp: RP, browsers: Browsers
) -> None:
    anonymous, signed_in = browsers.new(), browsers.signed_in()
    for expected, params in REFUSED_BY_REDIRECT:
        request = auth_request(rp, **params)
        if params.get("code_challenge_method") == "plain":
            request.params["code_challenge"] = request.verifier
        for browser in (anonymous, signed_in):
            answer = get_authorize(browser, **request.params)
            assert answer.status_code == 302, (params, answer.status_code)
            assert error_redirect(answer, rp, request) == expected, params
            assert "#" not in answer.headers["location"]  # query mode, nothing in a fragment


def test_unknown_parameters_scope_order_and_post_are_accepted(rp: RP, browsers: Browsers) -> None:
    """oidcc-ensure-request-with-unknown-parameter-succeeds, -other-scope-order-succeeds,
    -post-request-succeeds; ui_locales, claims_locales and acr_values are accepted."""
    browser = browsers.signed_in()
    extra = {"unknown_param": "x", "ui_locales": "fr-CA", "claims_locales": "fr", "acr_values": "1"}
    odd_state = "a b&c=d+é/?#%"  # returned exactly as sent
    request = auth_request(rp, scope="email openid", state=odd_state, **extra)
    assert callback(authorize(browser, request), rp)["state"] == odd_state
    request = auth_request(rp)
    posted = browser.post("/oauth2/authorize", data=request.params)
    assert "code" in callback(posted, rp)


def test_nonce_is_reflected_and_left_out_when_not_sent(rp: RP, browsers: Browsers) -> None:
    browser = browsers.new()
    with_nonce = sign_in_tokens(browser, rp)
    assert verify(rp.base_url, with_nonce.id_token).claims["nonce"] == with_nonce.request.nonce
    without = sign_in_tokens(browser, rp, auth_request(rp, nonce=None))
    assert "nonce" not in verify(rp.base_url, without.id_token).claims


def test_id_token_claims(app: Flask, jane: User, rp: RP, browsers: Browsers, clock) -> None:
    """oidcc-server: what a relying party checks in the ID token, against the JWKS only."""
    issued = sign_in_tokens(browsers.new(), rp)
    token = verify(rp.base_url, issued.id_token)
    assert token.header["alg"] == "RS256"
    found = token.claims
    assert found["iss"] == rp.base_url
    assert found["aud"] == rp.client_id and found["azp"] == rp.client_id
    assert found["sub"] == jane.id != jane.email
    assert found["iat"] == int(clock.now) == found["auth_time"]
    assert found["exp"] == found["iat"] + tokens.ID_TOKEN_SECONDS
    assert (found["amr"], found["acr"]) == (["pwd"], "1")
    assert found["sid"] and found["email"] == JANE and found["name"] == "Jane Doe"
    digest = hashlib.sha256(issued.access.encode()).digest()[:16]
    assert found["at_hash"] == base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_scopes_decide_the_claims(rp: RP, jane: User, browsers: Browsers) -> None:
    """oidcc-scope-profile, -email, and our permissions scope, in the ID token and UserInfo."""
    browser = browsers.new()
    bare = sign_in_tokens(browser, rp, auth_request(rp, scope="openid"))
    assert set(verify(rp.base_url, bare.id_token).claims) >= {"sub", "sid"}
    assert "email" not in verify(rp.base_url, bare.id_token).claims
    assert userinfo(rp.base_url, bare.access).json() == {"sub": jane.id}

    full = sign_in_tokens(browser, rp, auth_request(rp, scope="openid email profile permissions"))
    info = userinfo(rp.base_url, full.access).json()
    assert info == {
        "sub": jane.id, "email": JANE, "email_verified": True, "name": "Jane Doe",
        "preferred_username": JANE, "org": "acme",
        "permissions": ["messages.edit", "messages.send"],
    }  # fmt: skip
    posted = httpx.post(
        rp.base_url + "/oauth2/userinfo", headers={"Authorization": f"Bearer {full.access}"}
    )
    assert posted.json() == info  # oidcc-userinfo-post-header


# --- prompt and max_age --------------------------------------------------------------------


def test_prompt_none_never_shows_a_page(rp: RP, third_party: RP, browsers: Browsers, clock) -> None:
    # No session: login_required (oidcc-prompt-none-not-logged-in).
    request = auth_request(rp, prompt="none")
    answer = get_authorize(browsers.new(), **request.params)
    assert error_redirect(answer, rp, request) == "login_required"
    # A session: the code at once (oidcc-prompt-none-logged-in).
    browser = browsers.signed_in()
    request = auth_request(rp, prompt="none")
    assert "code" in callback(get_authorize(browser, **request.params), rp)
    # A third-party client the user has not consented to: consent_required.
    request = auth_request(third_party, prompt="none")
    answer = get_authorize(browser, **request.params)
    assert error_redirect(answer, third_party, request) == "consent_required"
    # A sign-in older than max_age: login_required.
    clock.advance(120)
    request = auth_request(rp, prompt="none", max_age="60")
    assert error_redirect(get_authorize(browser, **request.params), rp, request) == "login_required"


def test_max_age_and_prompt_login_force_a_fresh_sign_in(rp: RP, browsers: Browsers, clock) -> None:
    """oidcc-max-age-1 and oidcc-prompt-login: the sign-in page although a session exists;
    after the password again, a code whose ID token carries the new auth_time."""
    for ask in ({"max_age": "0"}, {"max_age": "60"}, {"prompt": "login"}):
        browser = browsers.signed_in()
        signed_in_at = int(clock.now)
        clock.advance(120)
        request = auth_request(rp, **ask)
        answer = get_authorize(browser, **request.params)
        assert answer.status_code == 302, ask
        assert answer.headers["location"].startswith("/login/reauth?"), ask

        code = callback(navigate(browser, answer), rp)["code"]  # the password again
        issued = rp.exchange(code, request.verifier).json()
        auth_time = verify(rp.base_url, issued["id_token"]).claims["auth_time"]
        assert auth_time == int(clock.now) == signed_in_at + 120, ask


def test_max_age_that_is_satisfied_needs_no_sign_in(rp: RP, browsers: Browsers, clock) -> None:
    browser = browsers.signed_in()
    signed_in_at = int(clock.now)
    clock.advance(120)
    request = auth_request(rp, max_age="10000")  # oidcc-max-age-10000
    code = callback(get_authorize(browser, **request.params), rp)["code"]
    issued = rp.exchange(code, request.verifier).json()
    assert verify(rp.base_url, issued["id_token"]).claims["auth_time"] == signed_in_at


def test_login_hint_prefills_the_sign_in_form(rp: RP, browsers: Browsers) -> None:
    browser = browsers.new()
    answer = get_authorize(browser, **auth_request(rp, login_hint=JANE).params)
    page = browser.get(answer.headers["location"])
    assert f'value="{JANE}"' in page.text


# --- consent ------------------------------------------------------------------------------


def test_consent_is_asked_of_a_third_party_client_and_a_no_is_access_denied(
    third_party: RP, browsers: Browsers
) -> None:
    browser = browsers.new()
    request = auth_request(third_party)
    page = authorize(browser, request, consent=None)
    assert is_consent_page(page)
    assert "Partner App" in page.text and "Your email address" in page.text
    # The form is ours alone: without its CSRF token the answer is refused, and no redirect.
    forged = browser.post("/oauth2/authorize/consent", data=request.params | {"decision": "allow"})
    assert forged.status_code == 400 and "location" not in forged.headers

    answer = answer_consent(browser, page, "deny")
    assert error_redirect(answer, third_party, request) == "access_denied"
    [denied] = audit_events("oidc.consent.deny")
    assert denied.target == third_party.client_id
    assert audit_events("oidc.consent.grant") == []


def test_consent_given_is_remembered_until_more_is_asked(
    third_party: RP, jane: User, browsers: Browsers
) -> None:
    browser = browsers.new()
    first = auth_request(third_party, scope="openid email")
    assert is_consent_page(authorize(browser, first, consent=None))
    code_for(browser, third_party, first)  # allow
    [granted] = audit_events("oidc.consent.grant")
    assert (granted.actor_id, granted.target) == (jane.id, third_party.client_id)
    assert granted.details == {"scope": "openid email"}

    # Remembered: the same request goes straight back with a code.
    again = auth_request(third_party, scope="openid email")
    assert "code" in callback(authorize(browser, again, consent=None), third_party)
    # prompt=consent asks again, and so does a wider scope.
    for request in (
        auth_request(third_party, scope="openid email", prompt="consent"),
        auth_request(third_party, scope="openid email profile"),
    ):
        assert is_consent_page(authorize(browser, request, consent=None))


# --- tokens at UserInfo and refresh-token reuse --------------------------------------------


def test_expired_or_revoked_access_token_is_refused_at_userinfo(
    rp: RP, browsers: Browsers, clock
) -> None:
    browser = browsers.new()
    expiring, revoked = sign_in_tokens(browser, rp), sign_in_tokens(browser, rp)
    assert rp.revoke(revoked.access).status_code == 200
    assert_invalid_token(userinfo(rp.base_url, revoked.access))

    clock.advance(tokens.ACCESS_TOKEN_SECONDS - 1)
    assert userinfo(rp.base_url, expiring.access).status_code == 200
    clock.advance(1)
    assert_invalid_token(userinfo(rp.base_url, expiring.access))


def test_refresh_token_reuse_revokes_the_whole_family(
    rp: RP, jane: User, browsers: Browsers
) -> None:
    issued = sign_in_tokens(browsers.new(), rp)
    rotated = rp.refresh(issued.refresh)
    assert rotated.status_code == 200
    successor = rotated.json()
    assert successor["refresh_token"] != issued.refresh
    assert userinfo(rp.base_url, successor["access_token"]).status_code == 200

    assert oauth_error(rp.refresh(issued.refresh)) == "invalid_grant"  # reuse: theft
    assert oauth_error(rp.refresh(successor["refresh_token"])) == "invalid_grant"
    assert_invalid_token(userinfo(rp.base_url, successor["access_token"]))
    assert_invalid_token(userinfo(rp.base_url, issued.access))

    [reuse] = audit_events("oidc.grant.revoke")
    assert (reuse.outcome, reuse.actor_id, reuse.target) == ("failure", jane.id, rp.client_id)
    assert reuse.details["reason"] == "refresh_token_reuse"


# --- hostile input: a 4xx that says why, never a 500 ---------------------------------------


def _unsigned(claims: dict[str, object], header: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(claims)}."


def test_forged_access_tokens_are_refused_at_userinfo(rp: RP, browsers: Browsers) -> None:
    issued = sign_in_tokens(browsers.new(), rp)
    real = verify(rp.base_url, issued.access)
    header, claims = dict(real.header), dict(real.claims)
    # Algorithm confusion: HS256 keyed with our public key, as a naive verifier would accept.
    [ours] = [
        k
        for k in httpx.get(rp.base_url + "/oauth2/jwks").json()["keys"]
        if k["kid"] == header["kid"]
    ]
    public_pem = jwk.RSAKey.import_key(ours).as_pem(private=False)
    confused = _unsigned(claims, {**header, "alg": "HS256"}).rstrip(".")
    mac = hmac.new(public_pem, confused.encode(), hashlib.sha256).digest()
    forged = [
        _unsigned(claims, {**header, "alg": "none"}),
        _unsigned(claims, {"alg": "none"}),
        jwt.encode(header, claims, jwk.RSAKey.generate_key(2048)),  # our kid, another key
        confused + "." + base64.urlsafe_b64encode(mac).decode().rstrip("="),
        issued.id_token,  # an ID token is not an access token (typ)
        issued.access[:-4] + "AAAA",
        issued.access + "." + issued.access,
    ]
    for token in forged:
        assert_invalid_token(userinfo(rp.base_url, token))
    assert userinfo(rp.base_url, issued.access).status_code == 200


def test_hostile_input_gets_a_4xx_with_a_message(rp: RP, browsers: Browsers) -> None:
    base = rp.base_url
    issued = sign_in_tokens(browsers.new(), rp)
    form = {"content-type": "application/x-www-form-urlencoded"}
    basic = rp.secret and base64.b64encode(f"{rp.client_id}:{rp.secret}".encode()).decode()
    answers = {
        "huge code": rp.exchange("c" * 100_000, "v" * 43),
        "huge refresh token": rp.refresh("r" * 100_000),
        "non-UTF-8 code (escaped)": httpx.post(
            base + "/oauth2/token",
            content=b"grant_type=authorization_code&code=%ff%fe%00&redirect_uri=x",
            headers=form | {"Authorization": f"Basic {basic}"},
        ),
        "non-UTF-8 code (raw)": httpx.post(
            base + "/oauth2/token",
            content=b"grant_type=authorization_code&code=\xff\xfe&redirect_uri=x",
            headers=form | {"Authorization": f"Basic {basic}"},
        ),
        "non-UTF-8 verifier": httpx.post(
            base + "/oauth2/token",
            content=b"grant_type=authorization_code&code=abc&code_verifier=%ff%ff&redirect_uri=x",
            headers=form | {"Authorization": f"Basic {basic}"},
        ),
        "non-UTF-8 authorize": httpx.get(base + "/oauth2/authorize?client_id=%ff&redirect_uri=%fe"),
        "non-UTF-8 logout": httpx.get(base + "/oauth2/logout?id_token_hint=%ff.%fe.%00"),
        "non-UTF-8 bearer": httpx.get(
            base + "/oauth2/userinfo", headers=[(b"Authorization", b"Bearer \xff\xfe")]
        ),
        "huge bearer": userinfo(base, "a" * 60_000),
        "revoke bad hint": rp.revoke(issued.access, hint="id_token"),
    }
    for header in (
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),  # not UTF-8 once decoded
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(f"{rp.client_id}:wrong".encode()).decode(),
        "Basic",
        "Basic " + "A" * 10_000,
    ):
        answers[f"token with {header[:24]!r}"] = httpx.post(
            base + "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": issued.refresh},
            headers={"Authorization": header},
        )
    for name, answer in answers.items():
        assert 400 <= answer.status_code < 500 or answer.status_code == 302, (name, answer)
        if answer.status_code == 302:  # an error for the client, by redirect
            raise AssertionError(f"{name}: unexpected redirect {answer.headers['location']}")
        elif answer.headers["content-type"].startswith("application/json"):
            assert answer.json()["error"], name
        else:
            assert "Error 500" not in answer.text and answer.text.strip(), name
    # RFC 7662: what is not a live token is simply not active.
    for junk in ("t" * 100_000, "\u00ff\u0000", issued.access[::-1]):
        answer = rp.introspect(junk)
        assert (answer.status_code, answer.json()) == (200, {"active": False})
    # None of that disturbed the tokens issued before it.
    assert rp.refresh(issued.refresh).status_code == 200


def test_oversized_authorization_requests_are_answered_not_cut_short(
    rp: RP, browsers: Browsers
) -> None:
    # A scope repeated four hundred times is kept once per name (the columns hold 1000).
    repeated = auth_request(rp, scope="openid " * 400)
    code = callback(get_authorize(browsers.signed_in(), **repeated.params), rp)["code"]
    assert rp.exchange(code, repeated.verifier).json()["scope"] == "openid"
    # A request too long to ride through the sign-in page is refused, not truncated there
    # (which would bring it back without its PKCE challenge or prompt).
    long_state = auth_request(rp, state="s" * 3000)
    answer = get_authorize(browsers.new(), **long_state.params)
    assert error_redirect(answer, rp, long_state) == "invalid_request"


def test_oversized_body_is_413(rp: RP) -> None:
    answer = rp.post("/oauth2/token", {"grant_type": "refresh_token", "x": "y" * 2**21})
    assert answer.status_code == 413
