"""Tenants, API clients and token issuance."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from examtrail.audit import actions
from examtrail.audit.service import Entry, record, record_committed, record_many
from examtrail.auth import repository
from examtrail.auth.models import ApiClient
from examtrail.core import security
from examtrail.core.db import on_async_connection, utcnow
from examtrail.core.timeutil import format_dt

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class InvalidCredentials(Exception):
    """Unknown client, revoked client or wrong key; deliberately not more specific."""


# The columns' length (auth.models): longer would be a database error on PostgreSQL.
MAX_NAME_LENGTH = 200


def _check_name(what: str, value: str, *, required: bool) -> None:
    """A tenant name or client label is one line of printable text within the column's length:
    operators type it (``--tenant``) and read it in listings, logs and exports."""
    if required and not value.strip():
        raise ValueError(f"{what} must not be blank")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} must be at most {MAX_NAME_LENGTH} characters")
    if value != value.strip():
        raise ValueError(f"{what} must not start or end with whitespace")
    # Control, format, surrogate, private-use and unassigned characters; line and paragraph separators.
    if any(
        unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp") for char in value
    ):
        raise ValueError(f"{what} must not contain control characters or line breaks")


@dataclass(frozen=True, slots=True)
class NewClient:
    client_id: str
    api_key: str
    tenant_id: int
    tenant_name: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_at: datetime
    expires_in: int


def create_client(
    session: Session,
    *,
    tenant_name: str,
    scopes: frozenset[str],
    name: str = "",
    actor: str | None = actions.CLI_ACTOR,
) -> NewClient:
    """``actor``: who creates it, for the audit log (clients are created on the command line)."""
    unknown = scopes - set(security.SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(security.SCOPES)}")
    _check_name("the tenant name", tenant_name, required=True)
    _check_name("the client's name", name, required=False)
    tenant = repository.get_tenant_by_name(session, tenant_name) or repository.add_tenant(
        session, tenant_name
    )
    api_key = security.new_api_key()
    client = ApiClient(
        client_id=security.new_client_id(),
        tenant_id=tenant.id,
        name=name,
        key_hash=security.hash_api_key(api_key),
        scopes=",".join(sorted(scopes)),
    )
    repository.add_client(session, client)
    record(
        session,
        tenant_id=tenant.id,
        client_id=actor,
        action=actions.CLIENT_CREATED,
        object_type=actions.OBJECT_CLIENT,
        object_id=client.client_id,
        details={"scopes": sorted(scopes)},
    )
    return NewClient(client.client_id, api_key, tenant.id, tenant.name, scopes)


def revoke_client(session: Session, client_id: str, actor: str | None = actions.CLI_ACTOR) -> bool:
    client = repository.get_client(session, client_id)
    if client is None or client.revoked_at is not None:
        return False
    client.revoked_at = utcnow()
    record(
        session,
        tenant_id=client.tenant_id,
        client_id=actor,
        action=actions.CLIENT_REVOKED,
        object_type=actions.OBJECT_CLIENT,
        object_id=client.client_id,
    )
    return True


def record_for_every_tenant(
    session: Session,
    action: actions.Action,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
    actor: str | None = actions.CLI_ACTOR,
) -> None:
    """One entry per tenant for an action on the service itself (its keys): each tenant's
    log is complete on its own, and no tenant reads another's."""
    record_many(
        session,
        [
            Entry(tenant_id, actor, action, object_type, object_id, details=details)
            for tenant_id in repository.tenant_ids(session)
        ],
    )


def authenticate(session: Session, client_id: str, api_key: str) -> ApiClient:
    return _checked(repository.get_client(session, client_id), api_key)


def _checked(client: ApiClient | None, api_key: str) -> ApiClient:
    # Hash even for unknown clients so timing does not reveal which client ids exist.
    stored = client.key_hash if client is not None else "0" * 64
    if not security.api_key_matches(api_key, stored) or client is None or client.revoked_at is not None:
        raise InvalidCredentials
    return client


def issue_token(
    session: Session, signing_key: bytes, ttl_seconds: int, client_id: str, api_key: str
) -> IssuedToken:
    issued, entry = _token(signing_key, ttl_seconds, authenticate(session, client_id, api_key))
    record_many(session, [entry])
    return issued


async def issue_token_async(
    engine: AsyncEngine, signing_key: bytes, ttl_seconds: int, client_id: str, api_key: str
) -> IssuedToken:
    """:func:`issue_token` on the async engine (PostgreSQL): the client read with one SELECT,
    the audit entry committed before the token is returned."""
    client = await on_async_connection(
        engine, lambda connection: repository.read_client_async(connection, client_id)
    )
    issued, entry = _token(signing_key, ttl_seconds, _checked(client, api_key))
    await record_committed(engine, entry)
    return issued


def _token(signing_key: bytes, ttl_seconds: int, client: ApiClient) -> tuple[IssuedToken, Entry]:
    token, expires_at = security.issue_token(
        signing_key,
        tenant_id=client.tenant_id,
        client_id=client.client_id,
        scopes=client.scope_set,
        ttl_seconds=ttl_seconds,
    )
    # The client id, never the token.
    entry = Entry(
        tenant_id=client.tenant_id,
        client_id=client.client_id,
        action=actions.TOKEN_ISSUED,
        object_type=actions.OBJECT_CLIENT,
        object_id=client.client_id,
        details={"expires": format_dt(expires_at), "scopes": sorted(client.scope_set)},
    )
    return IssuedToken(token, expires_at, ttl_seconds), entry
