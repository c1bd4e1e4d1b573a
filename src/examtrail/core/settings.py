"""Settings read from the environment (prefix ``EXAMTRAIL_``) or a ``.env`` file."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The queue backends ``examtrail.queue.broker`` knows (an empty URL: in-process).
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps")
# What both Python's logging and uvicorn's ``--log-level`` take.
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMTRAIL_", env_file=".env", extra="ignore")

    # Where the embedded default keeps its SQLite database, object store and signing key.
    data_dir: Path = Path("./var")
    # Empty means SQLite in ``data_dir``; production uses ``postgresql+psycopg://...``.
    database_url: str = ""
    # Base of links the service hands out (local-store downloads, Location headers).
    public_url: str = "http://127.0.0.1:8000"
    # Secret for JWTs and locally signed URLs. Generated once into ``data_dir`` when empty.
    secret_key: SecretStr = SecretStr("")
    # Several secrets, newest first (comma-separated in the environment): new tokens, links
    # and sealed secrets use the first; those made with an older one still verify and open.
    # Takes precedence over ``secret_key``.
    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    token_ttl_seconds: int = Field(default=3600, ge=1, le=86_400)
    # A revoked client's tokens are refused within this many seconds (0: every request reads it).
    revocation_check_seconds: float = Field(default=5.0, ge=0, le=60)

    storage: Literal["local", "s3"] = "local"
    s3_bucket: str = "examtrail"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Which S3 client: "light" (our own, storage/s3http.py: ~20 MB less per process) needs
    # static credentials; "boto3" finds them on boto's chain too; "auto": light when static.
    s3_client: Literal["auto", "light", "boto3"] = "auto"
    # S3's smallest part: each running export holds a few parts in memory (bench/notes.md:
    # 5 MiB parts upload as fast as 8 MiB ones on SeaweedFS and cut the worker's peak ~12 MB).
    s3_part_size: int = Field(default=5 * 1024 * 1024, ge=5 * 1024 * 1024)
    # Parts uploaded at once per writer: memory is part_size x (this + 1) per running export.
    s3_upload_concurrency: int = Field(default=2, ge=1, le=16)

    # Empty: Dramatiq's in-process broker with worker threads inside the API process.
    broker_url: str = ""
    # Several deployments (or test runs) can share one Redis/RabbitMQ with distinct names.
    queue_name: str = Field(default="examtrail", pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    worker_threads: int = Field(default=2, ge=1, le=64)
    # A running job's lease; a worker renews it while it works. An expired lease means
    # the worker died, and the sweeper hands the job to another worker.
    job_lease_seconds: int = Field(default=30, ge=2)
    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    job_max_attempts: int = Field(default=5, ge=1)
    # Hand out a finished export again when its options match and nothing was ingested
    # since its snapshot (the benchmark turns it off to time repeated exports).
    export_reuse: bool = True
    # Export files are deleted this many days after their job finished (0: kept forever).
    export_retention_days: int = Field(default=30, ge=0, le=36_500)
    # An erasure of at most this many events runs in the request (200); larger ones run as a
    # background job (202). Rows are deleted this many at a time.
    erasure_sync_max_events: int = Field(default=1000, ge=0)
    erasure_batch_size: int = Field(default=500, ge=1, le=10_000)

    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_batch_events: int = Field(default=10_000, ge=1)
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)

    webhook_allow_private: bool = False
    webhook_url_ttl_seconds: int = Field(default=3600, ge=60)
    # One deadline for a whole webhook request (DNS, connect, TLS, send, status and headers).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Subscription verifications in progress at once per API process (beyond: 503 verification_busy).
    webhook_verify_threads: int = Field(default=16, ge=1, le=256)
    # Threads per process that send webhooks (their own queue lane, apart from exports).
    webhook_threads: int = Field(default=2, ge=1, le=64)
    # Comma-separated seconds in the environment ("0,5,300"); JSON lists work too. One entry
    # per attempt, so at least one; no negative waits.
    webhook_retry_schedule: Annotated[list[Annotated[int, Field(ge=0)]], NoDecode] = Field(
        default_factory=lambda: [0, 5, 300, 1800, 7200, 18000, 36000, 36000], min_length=1
    )
    webhook_disable_after_days: float = Field(default=5.0, gt=0)

    # A request's headers must be complete this long after its first byte (slow-header clients).
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # An idle keep-alive connection is closed after this many seconds.
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=300)

    log_level: str = "INFO"
    # ``json`` (one JSON object per line) or ``text``; unset: json unless stderr is a terminal.
    log_format: Literal["json", "text"] | None = None

    # Where API and worker processes of one host share their metric files (Prometheus
    # multiprocess mode); ``examtrail serve`` empties it at start. Unset: ``data_dir/metrics``.
    metrics_dir: Path | None = None
    # When set, ``/metrics`` wants ``Authorization: Bearer <token>``; unset, it is open
    # (restrict it at the network level, as for any exporter).
    metrics_token: SecretStr | None = None

    # Read once per process: the keys are on every request's path (tokens, links).
    _keyring: list[bytes] | None = PrivateAttr(default=None)

    @field_validator("public_url", "s3_endpoint_url", "s3_public_endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Checked at start: a typo would otherwise surface as broken links handed to clients.
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises on a port that is not a number in range)
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. https://exams.example.org")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].split("+", 1)[0] if value else ""
        if value and scheme not in ("sqlite", "postgresql"):
            raise ValueError(
                "must be a sqlite:/// or postgresql+psycopg:// URL (empty: SQLite in the data dir)"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if value and value.split("://", 1)[0] not in BROKER_SCHEMES:
            raise ValueError("must be a redis://, rediss://, amqp:// or amqps:// URL (empty: in-process)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                try:
                    return json.loads(value)
                except ValueError:  # never the error's text: it quotes the secrets
                    raise ValueError("a JSON list of secrets that does not parse") from None
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [int(part) for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'examtrail.db').resolve()}"

    @property
    def resolved_metrics_dir(self) -> Path:
        return (self.metrics_dir or self.data_dir / "metrics").resolve()

    @property
    def resolved_log_format(self) -> Literal["json", "text"]:
        if self.log_format is not None:
            return self.log_format
        import sys

        return "text" if sys.stderr.isatty() else "json"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def secret_keyring(self) -> list[bytes]:
        """The service's secrets, newest first: ``secret_keys``, else ``secret_key``, else a
        key generated once into ``data_dir``."""
        if self._keyring is None:
            self._keyring = self._load_keyring()
        return self._keyring

    def signing_key(self) -> bytes:
        """The newest secret: what new tokens, links and sealed secrets are made with."""
        return self.secret_keyring()[0]

    def _load_keyring(self) -> list[bytes]:
        keys = [k.get_secret_value().encode() for k in self.secret_keys if k.get_secret_value()]
        if keys:
            # A key listed twice would only be tried twice.
            return list(dict.fromkeys(keys))
        if self.secret_key.get_secret_value():
            return [self.secret_key.get_secret_value().encode()]
        return [self._load_file_key()]

    def _load_file_key(self) -> bytes:
        path = self.data_dir / "secret.key"
        if not path.exists():
            import secrets

            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            try:
                # link() fails if another process won the race; then we use theirs.
                import os

                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
