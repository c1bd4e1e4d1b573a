from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from examtrail.auth.models import ApiClient, Tenant


def get_tenant_by_name(session: Session, name: str) -> Tenant | None:
    return session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()


def add_tenant(session: Session, name: str) -> Tenant:
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return tenant


def get_client(session: Session, client_id: str) -> ApiClient | None:
    return session.get(ApiClient, client_id)


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
