"""CSRF defence for an app without sessions of its own: a form token bound to the gateway session.

An assertion proves who is calling, not that they meant to: the browser sends its gateway cookie
with a form that another site submits too (SameSite=Lax stops a cross-site POST but not one from
a sibling subdomain), and the gateway then adds a perfectly valid assertion. So every form carries
``HMAC(secret, audience, sub, sid)``. Another site cannot read our pages to learn it, nor compute
it without the secret; bound to ``sid``, the IdP session, a leaked token dies with that session.
It needs no server-side state, so any worker checks it, and it survives restarts because the
secret is kept in the app's database.

A double-submit cookie was the other candidate; it is weaker here because the cookie would live
on the gateway's origin, where a sibling subdomain can plant one of its own choosing.

Fetch Metadata is a second, independent check: a browser that says the request comes from
another site (``Sec-Fetch-Site: cross-site`` or ``same-site``) is refused whatever it sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from examples.messaging.assertion import Caller

FIELD = "csrf_token"
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})  # "none": typed URL or bookmark


class CsrfRefused(ValueError):
    """A state-changing request without proof that it came from one of our own pages."""


class CsrfGuard:
    def __init__(self, secret: bytes, audience: str) -> None:
        if len(secret) < 32:
            raise ValueError("the CSRF secret must have at least 32 bytes")
        self._secret = secret
        self._audience = audience

    def token(self, caller: Caller) -> str:
        """The token for every form shown to ``caller`` in this gateway session."""
        # NUL separates the fields: none of them can contain one, so no two inputs collide.
        message = "\0".join(("csrf", self._audience, caller.sub, caller.sid)).encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def check(self, caller: Caller, submitted: str | None, fetch_site: str | None) -> None:
        """Raise CsrfRefused unless the request carries ``caller``'s token from our own site."""
        if fetch_site is not None and fetch_site.lower() not in ALLOWED_FETCH_SITES:
            raise CsrfRefused(f"request sent from another site (Sec-Fetch-Site: {fetch_site})")
        if not submitted:
            raise CsrfRefused("form without a CSRF token")
        if not hmac.compare_digest(submitted.encode(), self.token(caller).encode()):
            raise CsrfRefused("CSRF token does not belong to this session")
