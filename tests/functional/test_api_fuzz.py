"""Fuzzing the admin API from its own OpenAPI document: no input may cause a server error.

Schemathesis reads /api/v1/openapi.json from the live server and, for every operation, sends
generated requests (valid ones, boundary values, and deliberately wrong ones) with an owner's
token. Every answer must be a non-5xx that the document declares, in the declared shape.
The number of examples is bounded so the run fits in CI.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from idp.extensions import db
from idp.models import ApiToken, User
from idp.services import orgs
from tests.support import make_user, token_for

# Bounded for CI; BASCULE_FUZZ_EXAMPLES=500 makes a long hunt by hand.
EXAMPLES = int(os.environ.get("BASCULE_FUZZ_EXAMPLES", "15"))
# Everything but positive_data_acceptance: a request that fits the document may still be
# refused by a rule (the last owner, a role name that does not exist, a duplicate), and that
# 400 is the right answer.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,  # what breaks the document is refused with a 4xx
    unsupported_method,  # 405 with Allow
    missing_required_header,
    ignored_auth,  # the same request without the token is a 401
]


class Owner:
    """The fuzzing owner, put back before each request: the fuzzer may well demote, disable or
    remove them (a second owner it invited lets it), or revoke their token, and every request
    after that would only test the 401 or 403."""

    def __init__(self, user: User, secret: str) -> None:
        self.user_id, self.secret = user.id, secret

    def restore(self) -> None:
        db.session.rollback()
        db.session.expire_all()
        user = db.session.get(User, self.user_id)
        assert user is not None
        org = orgs.get("acme")
        member = orgs.membership(user, org)
        revoked = db.session.scalars(
            db.select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_not(None))
        ).all()
        if user.is_active and member is not None and member.role.name == "owner" and not revoked:
            return  # as it was: no write, which keeps the run fast
        user.is_active = True
        owner_role = orgs.get_role(org, "owner")
        if member is None:
            orgs.add_member(user, org, owner_role)
        else:
            member.role = owner_role
        for token in revoked:
            token.revoked_at = None
        db.session.commit()


@pytest.fixture
def fuzz_owner(app: Flask) -> Owner:
    user = make_user(app, "olivia@acme.test", role="owner")
    make_user(app, "jane@acme.test", role="member")
    orgs.create_role(orgs.get("acme"), "support", frozenset({"audit.read"}))
    db.session.commit()
    return Owner(user, token_for(app, user))


@pytest.fixture
def api_schema(app: Flask, base_url: str, fuzz_owner: Owner) -> Any:
    """The live document, with the owner's token for its bearer scheme (schemathesis then
    knows which generated requests leave the token out on purpose)."""
    auth = {"auth": {"openapi": {"bearer": {"bearer": fuzz_owner.secret}}}}
    config = schemathesis.config.SchemathesisConfig.from_dict(auth)
    return schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no example database left behind in the work tree
    suppress_health_check=list(HealthCheck),
)
def test_admin_api_survives_fuzzing(case: Any, fuzz_owner: Owner) -> None:
    fuzz_owner.restore()
    case.call_and_validate(checks=CHECKS)
