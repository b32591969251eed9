"""Builds the services' context from the running app and the current request."""

from __future__ import annotations

from idp.runtime import runtime
from idp.services.credentials import Context
from idp.services.saml.sp import SamlContext
from idp.views._helpers import origin


def credentials_context() -> Context:
    rt = runtime()
    return Context(rt.settings, rt.store, rt.mailer, origin(), rt.clock())


def saml_context() -> SamlContext:
    rt = runtime()
    return SamlContext(rt.settings.issuer, rt.keyring, rt.store, origin(), rt.clock())
