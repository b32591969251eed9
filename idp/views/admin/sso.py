"""Single sign-on connections of the organisation (SAML): the "test connection" result.

A test runs a real sign-in at the IdP from the admin's browser and shows what came back and
what a sign-in would do with it, without signing anyone in or changing any account.
"""

from __future__ import annotations

from idp.common.permissions import SECURITY_MANAGE
from idp.models import SamlConnection
from idp.services import authz
from idp.services.authz import Principal
from idp.services.saml import provisioning
from idp.services.saml.login import Assertion
from idp.views._helpers import current_user
from idp.views.admin._common import render


def show_test_result(conn: SamlConnection, assertion: Assertion) -> str:
    """The result page of a test sign-in, for an admin of the connection's organisation."""
    user = current_user()
    acting = Principal(user, conn.org, "session") if user else None
    if acting is None:
        raise authz.Forbidden("Sign in as an administrator to test a connection.")
    authz.require(acting, SECURITY_MANAGE)
    result = provisioning.preview(conn, assertion)
    return render("sso_test.html", acting, active="sso", conn=conn, result=result)
