"""FastAPI dependencies shared by features: the app's runtime and request-scoped sessions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from examtrail.core.db import begin_write
from examtrail.runtime import Runtime


def get_runtime_dep(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime_dep)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    # Routes commit explicitly (the request is the edge); anything uncommitted is dropped.
    session = runtime.sessions()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def get_write_session(runtime: RuntimeDep) -> Iterator[Session]:
    """A session for routes that write: its transaction starts as a writer."""
    session = runtime.sessions()
    try:
        begin_write(session)
        yield session
    finally:
        session.rollback()
        session.close()


WriteSessionDep = Annotated[Session, Depends(get_write_session)]
