"""What the app accepts: message text, settings and plans. Pure functions, no Flask, no SQL."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from examples.messaging.store import Member, Settings

MAX_MESSAGE = 2000
MAX_WORKSPACE_NAME = 60
MAX_ANNOUNCEMENT = 280


class Invalid(ValueError):
    """Input the app refuses; the message is shown to the user beside the form."""


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    price_per_member: int  # euros a month
    member_limit: int | None


PLANS: dict[str, Plan] = {
    "free": Plan("Free", 0, 5),
    "team": Plan("Team", 6, 100),
    "business": Plan("Business", 12, None),
}


def message_body(form: Mapping[str, str]) -> str:
    """The text of a message, trimmed; refused when empty or too long."""
    return _text(form, "body", "A message", MAX_MESSAGE, required=True, multiline=True)


def settings(form: Mapping[str, str]) -> Settings:
    return Settings(
        workspace_name=_text(
            form, "workspace_name", "The workspace name", MAX_WORKSPACE_NAME, required=True
        ),
        announcement=_text(form, "announcement", "The announcement", MAX_ANNOUNCEMENT),
    )


def plan(form: Mapping[str, str], members: list[Member]) -> str:
    """The plan asked for; refused when unknown or too small for the members already here."""
    key = form.get("plan", "")
    chosen = PLANS.get(key)
    if chosen is None:
        raise Invalid("Choose one of the plans listed.")
    if chosen.member_limit is not None and len(members) > chosen.member_limit:
        raise Invalid(
            f"The {chosen.name} plan allows {chosen.member_limit} members;"
            f" this workspace has {len(members)}."
        )
    return key


def monthly_cost(plan_key: str, members: int) -> int:
    return PLANS[plan_key].price_per_member * members


def _text(
    form: Mapping[str, str],
    field: str,
    what: str,
    limit: int,
    *,
    required: bool = False,
    multiline: bool = False,
) -> str:
    # NFC so that the limit counts what people see, and "é" typed two ways is stored one way.
    value = unicodedata.normalize("NFC", form.get(field, "")).strip()
    value = value.replace("\r\n", "\n")
    if not multiline and "\n" in value:
        raise Invalid(f"{what} must fit on one line.")
    if required and not value:
        raise Invalid(f"{what} cannot be empty.")
    if len(value) > limit:
        raise Invalid(f"{what} is limited to {limit} characters ({len(value)} given).")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in value):
        raise Invalid(f"{what} contains control characters.")
    return value
