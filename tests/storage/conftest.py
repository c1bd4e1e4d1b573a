"""Fixtures for the object store contract suite: one SeaweedFS per test session (per
xdist worker) and a ``store`` fixture that runs each test on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from examtrail.core.settings import Settings
from examtrail.storage.base import ObjectStore
from examtrail.storage.local import LocalObjectStore
from examtrail.storage.s3 import MIN_PART_SIZE, S3ObjectStore
from tests.support.seaweedfs import SeaweedS3

PART_SIZE = MIN_PART_SIZE  # 5 MiB: the smallest part S3 accepts
LOCAL_PUBLIC_URL = "http://testserver"
LOCAL_SIGNING_KEY = b"storage-tests-signing-key-0123456789"

S3StoreFactory = Callable[..., S3ObjectStore]


def s3_settings(server: SeaweedS3, bucket: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"_env_file": None, "s3_part_size": PART_SIZE, **overrides}
    return Settings(**server.settings_overrides(bucket, **values))


@pytest.fixture
def make_s3_store(seaweed: SeaweedS3) -> Iterator[S3StoreFactory]:
    """Builds S3 stores on fresh (not yet created) buckets; drops the buckets afterwards."""
    buckets: list[str] = []

    def make(bucket: str | None = None, **overrides: Any) -> S3ObjectStore:
        bucket = bucket or f"test-{uuid.uuid4().hex[:20]}"
        buckets.append(bucket)
        return S3ObjectStore.from_settings(s3_settings(seaweed, bucket, **overrides))

    yield make
    for bucket in buckets:
        seaweed.delete_bucket(bucket)


# Both S3 clients: our light one (the default with static credentials) and boto3's.
S3_CLIENTS = ["light", "boto3"]


@pytest.fixture(
    params=["local", *(pytest.param(f"s3-{client}", marks=pytest.mark.s3) for client in S3_CLIENTS)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The same contract on every backend: a local directory or a fresh S3 bucket (through
    either S3 client)."""
    backend: ObjectStore
    if request.param == "local":
        backend = LocalObjectStore(tmp_path / "objects", LOCAL_PUBLIC_URL, LOCAL_SIGNING_KEY)
    else:
        make: S3StoreFactory = request.getfixturevalue("make_s3_store")
        backend = make(s3_client=request.param.removeprefix("s3-"))
    backend.ensure_ready()
    return backend
