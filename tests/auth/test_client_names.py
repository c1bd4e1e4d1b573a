"""Tenant names and client labels are checked where clients are created (``create_client``), so
every caller (the command line, the demo) is covered: nothing is stored for a bad one."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from examtrail.auth import service
from examtrail.auth.models import ApiClient, Tenant
from examtrail.core.db import transaction
from examtrail.runtime import Runtime

SCOPES = frozenset({"export"})


@pytest.mark.parametrize(
    ("tenant", "name", "message"),
    [
        ("", "", "the tenant name must not be blank"),
        (" \t ", "", "the tenant name must not be blank"),
        ("uni\na", "", "control characters or line breaks"),
        ("uni\x00a", "", "control characters or line breaks"),
        ("uni\u200ba", "", "control characters or line breaks"),
        ("uni-a ", "", "must not start or end with whitespace"),
        ("u" * 201, "", "at most 200 characters"),
        ("uni-a", "label\r\n", "the client's name must not"),
        ("uni-a", "l" * 201, "the client's name must be at most 200 characters"),
    ],
)
def test_bad_names_store_nothing(runtime: Runtime, tenant: str, name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message), transaction(runtime.sessions) as session:
        service.create_client(session, tenant_name=tenant, scopes=SCOPES, name=name)
    with runtime.sessions() as session:
        assert session.scalars(select(Tenant)).all() == []
        assert session.scalars(select(ApiClient)).all() == []


def test_names_of_any_script_and_the_longest(runtime: Runtime) -> None:
    for tenant in ("Universitetet i Bergen", "東京大学", "[/x]", "t" * 200):
        with transaction(runtime.sessions) as session:
            created = service.create_client(session, tenant_name=tenant, scopes=SCOPES, name="")
        assert created.tenant_name == tenant
