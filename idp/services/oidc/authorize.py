"""The authorization endpoint's decision, once authlib has validated the request's protocol:
sign in first, re-authenticate, ask consent, answer with an error, or issue a code.

``prompt`` and ``max_age`` are enforced here against the session's real ``auth_time``
(authlib enforces neither). A forced re-authentication is remembered server-side as the time
it was asked for; the request is satisfied once the session has signed in again since then.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from idp.models import User
from idp.models.oidc import OAuthClient
from idp.services.oidc import consent

PROMPTS = frozenset({"none", "login", "consent", "select_account"})
REAUTH_MARKER = "oidc_reauth_after"  # session key: when a fresh sign-in was asked for


class Step(enum.Enum):
    ISSUE = "issue"
    LOGIN = "login"  # no session: to the sign-in page
    REAUTH = "reauth"  # a session, but not fresh enough: sign in again
    CONSENT = "consent"


@dataclass(frozen=True)
class Outcome:
    step: Step | None
    error: str | None = None  # an OAuth error for the client instead of a step
    description: str = ""


def _error(code: str, description: str) -> Outcome:
    return Outcome(None, code, description)


def parse_prompt(raw: str | None) -> frozenset[str] | Outcome:
    prompts = frozenset((raw or "").split())
    if not prompts.issubset(PROMPTS):
        return _error("invalid_request", "Unsupported prompt value.")
    if "none" in prompts and len(prompts) > 1:
        return _error("invalid_request", "prompt=none cannot be combined with other values.")
    return prompts


def parse_max_age(raw: str | None) -> int | Outcome | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 10:
        return _error("invalid_request", "max_age must be a whole number of seconds.")
    return int(raw)


def decide(
    client: OAuthClient,
    user: User | None,
    auth_time: float | None,
    scope: str,
    prompt: str | None,
    max_age: str | None,
    reauth_marker: float | None,
    now: float,
) -> Outcome:
    prompts = parse_prompt(prompt)
    if isinstance(prompts, Outcome):
        return prompts
    age_limit = parse_max_age(max_age)
    if isinstance(age_limit, Outcome):
        return age_limit
    silent = "none" in prompts
    if user is None or auth_time is None:
        if silent:
            return _error("login_required", "The user is not signed in.")
        return Outcome(Step.LOGIN)
    stale = "login" in prompts or (age_limit is not None and now - auth_time > age_limit)
    if stale and reauth_marker is not None and auth_time >= reauth_marker:
        stale = False  # the user has signed in again since we asked
    if stale:
        if silent:
            return _error("login_required", "A fresh sign-in is required.")
        return Outcome(Step.REAUTH)
    if "consent" in prompts or consent.needed(client, user, scope):
        if silent:
            return _error("consent_required", "The user has not consented to this client.")
        return Outcome(Step.CONSENT)
    return Outcome(Step.ISSUE)
