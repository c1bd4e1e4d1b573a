"""Object storage backends (local directory, S3) behind one small protocol."""

from examtrail.storage.base import ObjectStore, ObjectWriter, StorageError, StoredObject
from examtrail.storage.factory import build_object_store

__all__ = ["ObjectStore", "ObjectWriter", "StorageError", "StoredObject", "build_object_store"]
