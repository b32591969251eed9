"""Keeps the gateway's cached permission sets honest (see idp/common/permission_cache.py).

Session events watch every flush for changed roles, grants and memberships, whatever service
made them, and bump the affected organisations' versions once the transaction has committed.
"""

from __future__ import annotations

from typing import Any

from flask import has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from idp.common import permission_cache
from idp.common.store import Store
from idp.models import Membership, Role, RolePermission, User
from idp.runtime import runtime
from idp.services import active_org

_PENDING = "bascule_permission_orgs"


def install() -> None:
    """Listen on every ORM session (idempotent: once per process)."""
    if event.contains(Session, "before_flush", _collect):
        return
    event.listen(Session, "before_flush", _collect)
    event.listen(Session, "after_commit", _bump)
    event.listen(Session, "after_rollback", _forget)


def _collect(session: Session, _context: Any, _instances: Any) -> None:
    touched: set[str] = session.info.setdefault(_PENDING, set())
    with session.no_autoflush:
        for obj in (*session.new, *session.dirty, *session.deleted):
            if isinstance(obj, Membership | Role):
                touched.add(obj.org_id)
            elif isinstance(obj, RolePermission):
                role = obj.role or session.get(Role, obj.role_id)
                if role is not None:
                    touched.add(role.org_id)


def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _bump(session: Session) -> None:
    touched = session.info.pop(_PENDING, None)
    if not touched or not has_app_context():
        return
    store = runtime().store
    for org_id in sorted(touched):
        store.incr(permission_cache.version_key(org_id), 10 * 365 * 86400)


def current(user: User, org_id: str, store: Store) -> frozenset[str]:
    """The user's permissions in the organisation, computed now and cached for the gateway.

    The version is read first: if a change commits meanwhile, the entry is born stale.
    """
    version = store.get(permission_cache.version_key(org_id))
    held = active_org.held_in(user, org_id) if user.is_active else frozenset()
    store.put(
        permission_cache.value_key(org_id, user.id),
        permission_cache.encode(version, held),
        permission_cache.VALUE_TTL_SECONDS,
    )
    return held
