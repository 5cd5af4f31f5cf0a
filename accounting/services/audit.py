"""The audit log: one append-only AuditEvent per change of a factor, budget, token or policy.

The services that make those changes call ``audit_record`` inside their own transaction, so a
change and its event commit (or roll back) together. ``actor`` is who asked: a signed-in user, an
API token, or ``None`` for the system (beat's provider fetch, ``load_factors``, a management
command run by an operator). Values in ``before``/``after`` are made JSON-safe here (dates and
datetimes as ISO strings, model instances as their primary key).

Report recipients (``Team.report_email``, extra recipients, opt-outs, bounce flags) are written
by ``accounting.services.report_delivery`` and the fleet file, which record
``RECIPIENT_CHANGE`` events (``object_type="report_recipients"``) with the old and new addresses.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from accounting.models import ApiToken, AuditEvent, Organization

Action = AuditEvent.Action
SYSTEM = "system"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "pk"):
        return value.pk
    return value


def actor_label(actor: Any) -> str:
    if actor is None:
        return SYSTEM
    if isinstance(actor, str):  # a named non-user actor: "manage.py tokens"
        return actor[:200] or SYSTEM
    if isinstance(actor, ApiToken):
        return f"token {actor.prefix} ({actor.scope}, id {actor.pk})"
    if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) is not None:
        return str(actor.get_username())[:200]
    token = getattr(actor, "token", None)  # accounting.api.auth.TokenPrincipal
    if isinstance(token, ApiToken):
        return actor_label(token)
    return SYSTEM


def audit_record(
    *,
    action: str,
    object_type: str,
    object_id: Any,
    org: Organization | int | None,
    actor: Any = None,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEvent:
    """Append one event. ``actor``: a user, an ApiToken, a TokenPrincipal, a label (str) or
    None (system)."""
    token = actor if isinstance(actor, ApiToken) else getattr(actor, "token", None)
    user = None
    if not isinstance(actor, ApiToken) and getattr(actor, "is_authenticated", False):
        user = actor if getattr(actor, "pk", None) is not None else None
    org_id = org.pk if isinstance(org, Organization) else org
    return AuditEvent.objects.create(
        org_id=org_id,
        actor_user=user,
        actor_token=token if isinstance(token, ApiToken) else None,
        actor_label=actor_label(actor),
        action=action,
        object_type=object_type,
        object_id=str(object_id)[:200],
        before=_jsonable(before),
        after=_jsonable(after),
        reason=(reason or "")[:500],
    )
