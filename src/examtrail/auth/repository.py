from __future__ import annotations

from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from examtrail.auth.models import ApiClient, Tenant

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


def get_tenant_by_name(session: Session, name: str) -> Tenant | None:
    return session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()


def tenant_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Tenant.id).order_by(Tenant.id)))


def add_tenant(session: Session, name: str) -> Tenant:
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return tenant


def get_client(session: Session, client_id: str) -> ApiClient | None:
    if "\x00" in client_id:
        return None  # no client id holds NUL (PostgreSQL cannot even compare one)
    return session.get(ApiClient, client_id)


_CLIENTS = cast(Table, ApiClient.__table__)
# The token call's read: one Core SELECT of the client's columns, built once.
_CLIENT_ROW = select(_CLIENTS).where(_CLIENTS.c.client_id == bindparam("client_id"))


async def read_client_async(connection: AsyncConnection, client_id: str) -> ApiClient | None:
    """The client, if any, as a transient :class:`ApiClient` (in no session)."""
    if "\x00" in client_id:
        return None  # as get_client
    row = (await connection.execute(_CLIENT_ROW, {"client_id": client_id})).one_or_none()
    return None if row is None else ApiClient(**row._mapping)


def add_client(session: Session, client: ApiClient) -> None:
    session.add(client)
    session.flush()


def list_clients(session: Session) -> list[tuple[ApiClient, Tenant]]:
    rows = session.execute(
        select(ApiClient, Tenant)
        .join(Tenant, Tenant.id == ApiClient.tenant_id)
        .order_by(ApiClient.created_at)
    )
    return [(client, tenant) for client, tenant in rows]


def client_is_revoked(session: Session, client_id: str) -> bool:
    """True when the client is revoked or does not exist (deleted)."""
    row = session.execute(select(ApiClient.revoked_at).where(ApiClient.client_id == client_id)).first()
    return row is None or row[0] is not None
