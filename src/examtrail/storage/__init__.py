"""Object storage backends (local directory, S3) behind one small protocol."""

from examtrail.storage.base import ObjectStore, ObjectWriter, StoredObject, StorageError
from examtrail.storage.factory import build_object_store

__all__ = ["ObjectStore", "ObjectWriter", "StoredObject", "StorageError", "build_object_store"]
