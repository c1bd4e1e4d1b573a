"""``examtrail keys``: the export signing keys and the service's secret keys.

- ``rotate``: a new Ed25519 key signs exports from now on; the old ones stay in the JWKS.
- ``list``: every signing key, which one is current, and whether it is sealed with the
  newest secret key.
- ``reencrypt``: after adding a new secret key in front of ``EXAMTRAIL_SECRET_KEYS``,
  re-seal stored secrets (webhook secrets, signing keys) with it, so the old one can go.
"""

from __future__ import annotations

import json

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from examtrail.audit import actions
from examtrail.auth import service as auth_service
from examtrail.cli.errors import CliError, data_table, output_console, require_database
from examtrail.core import crypto
from examtrail.core.db import build_engine, build_session_factory, transaction
from examtrail.core.settings import get_settings
from examtrail.core.timeutil import format_dt
from examtrail.exports import pseudonyms
from examtrail.exports import repository as exports_repository
from examtrail.signing import service as signing
from examtrail.webhooks import repository as webhooks_repository
from examtrail.webhooks import service as webhooks

keys_app = typer.Typer(
    help="Export signing keys and secret-key rotation.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = output_console()


@keys_app.command("rotate")
def rotate() -> None:
    """Make a new Ed25519 key sign exports from now on. Old keys stay published at
    /.well-known/jwks.json, so every earlier signature keeps verifying."""
    settings = get_settings()
    require_database(settings)
    engine = build_engine(settings)
    try:
        with transaction(build_session_factory(engine)) as session:
            key, retired = signing.rotate(session, settings)
    finally:
        engine.dispose()
    console.print(f"current signing key  [bold]{key.kid}[/]")
    for kid in retired:
        console.print(f"retired (still published)  {kid}")


@keys_app.command("list")
def list_keys(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
) -> None:
    """List the export signing keys (never their private parts)."""
    settings = get_settings()
    require_database(settings)
    engine = build_engine(settings)
    box = signing.key_box(settings)
    with build_session_factory(engine)() as session:
        rows = [
            {
                "kid": key.kid,
                "current": bool(key.current),
                "created": format_dt(key.created_at),
                "retired": format_dt(key.retired_at),
                "sealedWithNewestSecret": box.sealed_with_newest(key.private_key_encrypted),
            }
            for key in signing.list_keys(session)
        ]
    engine.dispose()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    console.print(f"newest secret key id: {crypto.key_id(settings.signing_key())}")
    columns = ("kid", "current", "created", "retired", "sealed with newest secret")
    console.print(
        data_table(
            columns,
            (
                (
                    str(row["kid"]),
                    "yes" if row["current"] else "",
                    str(row["created"] or ""),
                    str(row["retired"] or ""),
                    "yes" if row["sealedWithNewestSecret"] else "no",
                )
                for row in rows
            ),
        )
    )
    if not rows:
        console.print("(no signing key yet: the first start or export creates it)")


@keys_app.command("reencrypt")
def reencrypt() -> None:
    """Re-seal stored secrets (webhook subscription secrets, signing keys, pseudonym keys) with the newest
    secret key (the first of EXAMTRAIL_SECRET_KEYS). Run it after adding a new secret key
    and before removing the old one. Safe to run again; exits 1 if a secret could not be
    opened with any configured key (it is left as it was)."""
    settings = get_settings()
    require_database(settings)
    engine = build_engine(settings)
    sessions = build_session_factory(engine)
    results: dict[str, crypto.Resealed] = {}
    try:
        with sessions() as session:
            counts = {
                "webhook secrets": len(webhooks_repository.sealed_secrets(session)),
                "signing keys": len(signing.list_keys(session)),
                "pseudonym keys": len(exports_repository.all_pseudonym_keys(session)),
            }
        with (
            Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
            ) as bar,
            transaction(sessions) as session,
        ):
            # One transaction: either every secret moves or none does.
            task = bar.add_task("webhook secrets", total=counts["webhook secrets"])
            results["webhook secrets"] = webhooks.reencrypt_secrets(
                session, settings, lambda _moved: bar.advance(task)
            )
            task = bar.add_task("signing keys", total=counts["signing keys"])
            results["signing keys"] = signing.reencrypt_keys(
                session, settings, lambda _moved: bar.advance(task)
            )
            task = bar.add_task("pseudonym keys", total=counts["pseudonym keys"])
            results["pseudonym keys"] = pseudonyms.reencrypt_keys(
                session, settings.secret_keyring(), lambda _moved: bar.advance(task)
            )
            # In the same transaction: the entries exist if and only if secrets moved.
            if any(result.moved for result in results.values()):
                auth_service.record_for_every_tenant(
                    session,
                    actions.SECRETS_RESEALED,
                    actions.OBJECT_SECRET_KEY,
                    crypto.key_id(settings.signing_key()),
                )
    finally:
        engine.dispose()
    newest = crypto.key_id(settings.signing_key())
    for name, result in results.items():
        console.print(
            f"{name}: {result.moved} re-encrypted, {result.current} already under key {newest}, "
            f"{result.unreadable} unreadable"
        )
    unreadable = sum(r.unreadable for r in results.values())
    if unreadable:
        raise CliError(
            f"{unreadable} stored secret(s) open with none of the configured secret keys; "
            "put the key they were sealed with back into EXAMTRAIL_SECRET_KEYS and run again"
        )
