"""Stored text is printed as it is: a tenant, a label or a query value such as ``[/x]`` (Rich
markup) or ``:smile:`` (an emoji code) is neither a MarkupError nor rendered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from examtrail.auth.models import ApiClient
from examtrail.cli.main import app
from examtrail.core.settings import Settings, get_settings
from examtrail.runtime import Runtime
from tests.cli.conftest import point_cli_at
from tests.support.api import seed_test

MARKUP = "[/x]"


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    point_cli_at(settings, monkeypatch)
    yield
    get_settings.cache_clear()


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_audit_list_shows_a_query_value_with_brackets(
    http: TestClient, headers: dict[str, str], cli: None
) -> None:
    seed_test(http, headers, test_id=7002, candidates=1, events_per_candidate=1)
    # An event-name filter is recorded as given (a candidateId filter only as a count).
    ordered = http.post("/v1/test/7002/events?event=%5B/x%5D", headers=headers)
    assert ordered.status_code == 202, ordered.text

    listed = _run("audit", "list", "--tenant", "uni-a", "--action", "export.ordered")
    assert listed.exit_code == 0, listed.output
    assert MARKUP in listed.output


def test_clients_create_and_list_with_markup_in_tenant_and_label(runtime: Runtime, cli: None) -> None:
    created = _run("clients", "create", "--tenant", MARKUP, "--name", ":smile: [bold]")
    assert created.exit_code == 0, created.output
    with runtime.sessions() as session:
        (client,) = session.scalars(select(ApiClient).where(ApiClient.name == ":smile: [bold]"))
    # The shown-once key is printed (first) with the client id and the tenant as given.
    lines = created.output.splitlines()
    assert lines[0].startswith("API key    etk_")
    assert f"client id  {client.client_id}" in lines
    assert f"tenant     {MARKUP}" in lines

    listed = _run("clients", "list")
    assert listed.exit_code == 0, listed.output
    assert MARKUP in listed.output and ":smile: [bold]" in listed.output


def test_a_key_that_cannot_be_printed_is_not_created(
    runtime: Runtime, cli: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise BrokenPipeError

    monkeypatch.setattr("examtrail.cli.main.console.print", broken)
    monkeypatch.setattr("typer.echo", broken)
    for json_flag in ([], ["--json"]):
        result = _run("clients", "create", "--tenant", "uni-z", *json_flag)
        assert isinstance(result.exception, BrokenPipeError)
    with runtime.sessions() as session:
        assert session.scalars(select(ApiClient)).all() == []


def test_json_listings_keep_the_text(cli: None) -> None:
    assert _run("clients", "create", "--tenant", MARKUP, "--json").exit_code == 0
    (row,) = json.loads(_run("clients", "list", "--json").stdout)
    assert row["tenant"] == MARKUP
