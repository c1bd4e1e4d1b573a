"""Chooses the object store backend from settings."""

from __future__ import annotations

from collections.abc import Callable

from examtrail.core.settings import Settings
from examtrail.storage.base import ObjectStore


def _local(settings: Settings) -> ObjectStore:
    from examtrail.storage.local import LocalObjectStore

    return LocalObjectStore(settings.data_dir / "objects", settings.public_url, settings.secret_keyring())


def _s3(settings: Settings) -> ObjectStore:
    from examtrail.storage.s3 import S3ObjectStore

    return S3ObjectStore.from_settings(settings)


BACKENDS: dict[str, Callable[[Settings], ObjectStore]] = {"local": _local, "s3": _s3}


def build_object_store(settings: Settings) -> ObjectStore:
    return BACKENDS[settings.storage](settings)
