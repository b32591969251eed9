"""The SimpleSAMLphp harness works: python3-saml, as an SP in this process, signs in through it.

These tests prove the peer before Bascule's own SAML SP is tested against it: a signed
AuthnRequest goes out by redirect, alice logs in on SimpleSAMLphp's form, and the signed
Response validates with the IdP's certificate, carrying her email as NameID and her attributes.
Directory changes show on the next login, several SPs coexist, SP metadata XML registers an SP,
and IdP-initiated single logout runs through the built-in PHP server.

Nothing here serves the SP's URLs: ``login`` stops at the form the browser would post to the ACS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from tests.saml.simplesamlphp import (
    EMAIL_ADDRESS,
    SimpleSamlError,
    SimpleSamlIdp,
    follow_in_idp,
    login,
    make_self_signed,
    redirect_target,
    running_idp,
)

pytestmark = pytest.mark.slow  # each test starts its own php -S

SP_HOST = "127.0.0.1"
SP_PORT = 9  # discard: nothing listens, nothing is ever sent there


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[SimpleSamlIdp]:
    with running_idp(tmp_path / "idp") as running:
        yield running


@pytest.fixture(scope="module")
def sp_keys() -> tuple[str, str]:
    """The SP's signing key and certificate (one pair for the module: RSA keygen is slow)."""
    return make_self_signed("python3-saml test SP")


def sp_url(path: str) -> str:
    return f"http://{SP_HOST}:{SP_PORT}{path}"


def sp_settings(idp: SimpleSamlIdp, keys: tuple[str, str], name: str = "sp") -> dict[str, Any]:
    """A strict python3-saml configuration that demands every signature."""
    key_pem, cert_pem = keys
    return {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": sp_url(f"/{name}/metadata"),
            "assertionConsumerService": {
                "url": sp_url(f"/{name}/acs"),
                "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST,
            },
            "singleLogoutService": {
                "url": sp_url(f"/{name}/sls"),
                "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT,
            },
            "NameIDFormat": EMAIL_ADDRESS,
            "x509cert": cert_pem,
            "privateKey": key_pem,
        },
        "idp": {
            "entityId": idp.entity_id,
            "singleSignOnService": {
                "url": idp.sso_url,
                "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT,
            },
            "singleLogoutService": {
                "url": idp.slo_url,
                "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT,
            },
            "x509cert": idp.cert_pem,
        },
        "security": {
            "authnRequestsSigned": True,
            "logoutRequestSigned": True,
            "logoutResponseSigned": True,
            "wantMessagesSigned": True,
            "wantAssertionsSigned": True,
            "wantNameId": True,
            "wantAttributeStatement": True,
            "signatureAlgorithm": OneLogin_Saml2_Constants.RSA_SHA256,
            "digestAlgorithm": OneLogin_Saml2_Constants.SHA256,
            "rejectDeprecatedAlgorithm": True,
        },
    }


def request_data(path: str, query: httpx.URL | None = None) -> dict[str, Any]:
    """python3-saml's view of a request the SP received at ``path``."""
    data: dict[str, Any] = {
        "https": "off",
        "http_host": f"{SP_HOST}:{SP_PORT}",  # python3-saml 1.16 deprecates server_port
        "script_name": path,
        "get_data": dict(query.params) if query else {},
        "post_data": {},
    }
    if query is not None:
        # Check the redirect signature over the query exactly as SimpleSAMLphp encoded it.
        data["query_string"] = query.query.decode()
        data["validate_signature_from_qs"] = True
    return data


def start_login(settings: dict[str, Any], name: str = "sp") -> tuple[str, str]:
    """The SP's signed AuthnRequest redirect; return (redirect URL, request id)."""
    auth = OneLogin_Saml2_Auth(request_data(f"/{name}/login"), settings)
    url = auth.login(return_to=sp_url(f"/{name}/home"))
    return url, auth.get_last_request_id()


def sign_in(
    idp: SimpleSamlIdp, settings: dict[str, Any], username: str, password: str, name: str = "sp"
) -> OneLogin_Saml2_Response:
    """A whole SP-initiated login in a fresh browser; return the validated Response."""
    url, request_id = start_login(settings, name)
    with httpx.Client(timeout=10.0) as browser:
        post = login(browser, url, username, password)
    assert post.action == sp_url(f"/{name}/acs")
    assert post.relay_state == sp_url(f"/{name}/home")
    response = OneLogin_Saml2_Response(OneLogin_Saml2_Settings(settings), post.saml_response)
    acs_request = request_data(f"/{name}/acs")
    try:
        response.is_valid(acs_request, request_id, raise_exceptions=True)
    except Exception as exc:
        pytest.fail(f"python3-saml refused the Response: {exc}\n{idp.log_tail()}")
    return response


def register(idp: SimpleSamlIdp, keys: tuple[str, str], name: str = "sp") -> dict[str, Any]:
    """Register the SP with the IdP, demanding signed AuthnRequests; return its settings."""
    idp.add_sp(
        sp_url(f"/{name}/metadata"),
        acs_url=sp_url(f"/{name}/acs"),
        sls_url=sp_url(f"/{name}/sls"),
        cert_pem=keys[1],
        validate_authnrequest=True,
    )
    return sp_settings(idp, keys, name)


def test_alice_signs_in_with_email_nameid_and_attributes(
    idp: SimpleSamlIdp, sp_keys: tuple[str, str]
) -> None:
    settings = register(idp, sp_keys)

    response = sign_in(idp, settings, "alice", "alicepass")

    assert response.get_issuers() == [idp.entity_id]
    assert response.get_nameid() == "alice@corp.example"
    assert response.get_nameid_format() == EMAIL_ADDRESS
    attributes = response.get_attributes()
    assert attributes["email"] == ["alice@corp.example"]
    assert attributes["givenName"] == ["Alice"]
    assert attributes["sn"] == ["Liddell"]
    assert sorted(attributes["groups"]) == ["admins", "staff"]


def test_metadata_names_the_entity_and_signing_cert(idp: SimpleSamlIdp) -> None:
    xml = idp.metadata_xml()

    assert f'entityID="{idp.entity_id}"' in xml
    assert "".join(idp.cert_pem.splitlines()[1:-1]) in xml
    assert idp.sso_url in xml and idp.slo_url in xml


def test_wrong_password_is_refused(idp: SimpleSamlIdp, sp_keys: tuple[str, str]) -> None:
    settings = register(idp, sp_keys)
    url, _ = start_login(settings)

    with httpx.Client(timeout=10.0) as browser, pytest.raises(AssertionError, match="password"):
        login(browser, url, "alice", "not-her-password")


def test_authnrequest_signed_by_an_unknown_key_is_refused(
    idp: SimpleSamlIdp, sp_keys: tuple[str, str]
) -> None:
    register(idp, sp_keys)
    impostor = sp_settings(idp, make_self_signed("impostor"))
    url, _ = start_login(impostor)

    with httpx.Client(timeout=10.0) as browser, pytest.raises(SimpleSamlError):
        login(browser, url, "alice", "alicepass")
    assert any("Unable to validate signature" in line for line in idp.log_errors()), idp.log_tail()


def test_set_user_changes_attributes_on_the_next_login(
    idp: SimpleSamlIdp, sp_keys: tuple[str, str]
) -> None:
    settings = register(idp, sp_keys)
    first = sign_in(idp, settings, "alice", "alicepass")
    assert sorted(first.get_attributes()["groups"]) == ["admins", "staff"]

    idp.set_user(
        "alice",
        "newpass",
        {
            "email": ["alice@corp.example"],
            "givenName": ["Alice"],
            "sn": ["Hargreaves"],
            "groups": ["staff"],
        },
    )

    second = sign_in(idp, settings, "alice", "newpass")
    assert second.get_attributes()["groups"] == ["staff"]
    assert second.get_attributes()["sn"] == ["Hargreaves"]
    assert second.get_nameid() == "alice@corp.example"


def test_a_second_sp_can_be_registered(idp: SimpleSamlIdp, sp_keys: tuple[str, str]) -> None:
    first = register(idp, sp_keys, "one")
    second = register(idp, make_self_signed("second SP"), "two")

    assert sign_in(idp, first, "bob", "bobpass", "one").get_nameid() == "bob@corp.example"
    response = sign_in(idp, second, "bob", "bobpass", "two")
    assert response.get_attributes()["groups"] == ["staff"]


def test_sp_registered_from_its_metadata(idp: SimpleSamlIdp, sp_keys: tuple[str, str]) -> None:
    settings = sp_settings(idp, sp_keys)
    metadata = OneLogin_Saml2_Settings(settings).get_sp_metadata()

    entity_id = idp.add_sp_from_metadata(metadata)

    assert entity_id == sp_url("/sp/metadata")
    assert sign_in(idp, settings, "alice", "alicepass").get_nameid() == "alice@corp.example"


def answer_logout_request(
    idp: SimpleSamlIdp, settings: dict[str, Any], at_sls: httpx.URL
) -> tuple[str, str]:
    """Act as the SP's SLS: validate the IdP's LogoutRequest, return (NameID, response URL)."""
    auth = OneLogin_Saml2_Auth(request_data(at_sls.path, at_sls), settings)
    back_to_idp = auth.process_slo(keep_local_session=True)
    assert not auth.get_errors(), f"{auth.get_last_error_reason()}\n{idp.log_tail()}"
    name_id = OneLogin_Saml2_Logout_Request.get_nameid(auth.get_last_request_xml())
    return name_id, back_to_idp


def test_idp_initiated_logout_reaches_the_sp_and_returns(
    idp: SimpleSamlIdp, sp_keys: tuple[str, str]
) -> None:
    settings = register(idp, sp_keys)
    with httpx.Client(timeout=10.0) as browser:
        login(browser, start_login(settings)[0], "alice", "alicepass")  # an IdP session now

        leaving = idp.start_idp_logout(browser, return_to=sp_url("/signed-out"))

        # The IdP sends the browser to our SLS with a signed LogoutRequest for alice; the
        # SP's signed LogoutResponse goes back and the IdP (which checks that signature,
        # validate.logout) ends at ReturnTo.
        to_sp = redirect_target(leaving)
        assert str(to_sp).startswith(sp_url("/sp/sls?")), idp.log_tail()
        name_id, back_to_idp = answer_logout_request(idp, settings, to_sp)
        assert name_id == "alice@corp.example"
        finished = follow_in_idp(browser, back_to_idp)
        assert str(redirect_target(finished)) == sp_url("/signed-out"), idp.log_tail()

        # The IdP session is gone: a new login shows the password form again.
        page = browser.get(start_login(settings)[0], follow_redirects=True)
        assert 'name="password"' in page.text


def test_idp_initiated_logout_visits_every_sp(idp: SimpleSamlIdp, sp_keys: tuple[str, str]) -> None:
    sps = {name: register(idp, sp_keys, name) for name in ("one", "two")}
    with httpx.Client(timeout=10.0) as browser:
        login(browser, start_login(sps["one"], "one")[0], "bob", "bobpass")
        # Single sign-on: the second SP gets its Response without the password form.
        post = login(browser, start_login(sps["two"], "two")[0], "unused", "unused")
        assert post.action == sp_url("/two/acs")

        response = idp.start_idp_logout(browser, return_to=sp_url("/signed-out"))
        visited = []
        for _ in sps:
            to_sp = redirect_target(response)
            name = to_sp.path.split("/")[1]
            visited.append(name)
            _, back_to_idp = answer_logout_request(idp, sps[name], to_sp)
            response = follow_in_idp(browser, back_to_idp)

    assert sorted(visited) == ["one", "two"]
    assert str(redirect_target(response)) == sp_url("/signed-out"), idp.log_tail()
