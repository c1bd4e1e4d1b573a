"""Command-line parameters several commands share: the ids clients choose (testId, userId) are
int64, as in the API (``core.schemas.Int64Id``); a larger one is a usage error, not an
OverflowError from the database driver."""

from __future__ import annotations

import typer

from examtrail.core.schemas import INT64_MAX

TEST_ID = typer.Argument(..., metavar="TEST_ID", min=0, max=INT64_MAX, help="The test's id (testId).")
USER_ID = typer.Argument(..., metavar="USER_ID", min=0, max=INT64_MAX, help="The candidate's userId.")
TEST_ID_FILTER = typer.Option(
    None, "--test-id", metavar="TEST_ID", min=0, max=INT64_MAX, help="Only this test."
)
