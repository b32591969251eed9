"""The gateway's cached permission sets go stale the moment a change commits, whichever
service made it, so a removed permission never survives to the next request."""

from __future__ import annotations

from flask import Flask

from idp.common import permission_cache
from idp.extensions import db
from idp.runtime import runtime
from idp.services import authz, members, orgs, roles
from idp.services import permission_cache as cache
from tests.support import cli_context, make_user


def _cached(org_id: str, user_id: str) -> frozenset[str] | None:
    store = runtime().store
    raw, version = store.get_many(
        [permission_cache.value_key(org_id, user_id), permission_cache.version_key(org_id)]
    )
    return permission_cache.decode(raw, version)


def test_a_role_change_makes_every_cached_set_of_the_org_stale(app: Flask) -> None:
    with app.app_context():
        user = make_user(app)
        org = orgs.get("acme")
        operator = authz.operator(org)
        sender = roles.create(operator, cli_context(), "sender", frozenset({"messages.send"}))
        member = orgs.membership(user, org)
        assert member is not None
        members.change_role(operator, cli_context(), member.id, "sender")
        assert cache.current(user, org.id, runtime().store) == {"messages.send"}
        assert _cached(org.id, user.id) == {"messages.send"}

        roles.set_permissions(operator, cli_context(), sender.id, frozenset())
        assert _cached(org.id, user.id) is None  # stale: the gateway must ask again
        assert cache.current(user, org.id, runtime().store) == frozenset()
        assert _cached(org.id, user.id) == frozenset()


def test_membership_changes_and_removal_make_it_stale(app: Flask) -> None:
    with app.app_context():
        user = make_user(app, role="member")
        org = orgs.get("acme")
        operator = authz.operator(org)
        cache.current(user, org.id, runtime().store)
        assert _cached(org.id, user.id) == {"messages.send", "messages.edit"}
        member = orgs.membership(user, org)
        assert member is not None
        members.change_role(operator, cli_context(), member.id, "viewer")
        assert _cached(org.id, user.id) is None
        cache.current(user, org.id, runtime().store)
        members.remove(operator, cli_context(), member.id)
        assert _cached(org.id, user.id) is None
        db.session.expire_all()
        assert cache.current(user, org.id, runtime().store) == frozenset()


def test_a_rolled_back_change_bumps_nothing(app: Flask) -> None:
    with app.app_context():
        user = make_user(app, role="member")
        org = orgs.get("acme")
        cache.current(user, org.id, runtime().store)
        member = orgs.membership(user, org)
        assert member is not None
        member.role = orgs.get_role(org, "owner")
        db.session.flush()
        db.session.rollback()
        assert _cached(org.id, user.id) == {"messages.send", "messages.edit"}
