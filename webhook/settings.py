"""Frozen settings read once from the WEBHOOK_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from webhook.ado import validate_authority
from webhook.domain.database_url import DatabaseUrlError, parse_database_url, redact_url
from webhook.logs import register_secret

DEFAULT_DB = "var/webhook.db"
DEFAULT_MAX_BODY = 16 * 1024 * 1024
HOOK_MIN_BODY = 2 * 1024 * 1024
DEFAULT_ENTRA_AUTHORITY = "https://login.microsoftonline.com"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Content changes wait at most a day for their work item update.
MAX_CONTENT_SYNC_SECONDS = 86_400
DEFAULT_RETRY_BASE = 2.0
DEFAULT_RETRY_CAP = 600.0


class SettingsError(Exception):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    db_path: Path
    admin_token: str = field(repr=False)
    secret_keys: tuple[str, ...] = field(repr=False)
    public_url: str | None = None
    allowed_org_hosts: frozenset[str] = frozenset()
    max_body_bytes: int = DEFAULT_MAX_BODY
    entra_authority: str = DEFAULT_ENTRA_AUTHORITY
    hook_check_seconds: int = 3600
    reconcile_seconds: int = 900
    log_level: str = "INFO"
    content_sync_seconds: int = 60
    # Job retry backoff (webhook.worker.RetryPolicy: full jitter, base·2^(n-1) capped).
    retry_base_seconds: float = DEFAULT_RETRY_BASE
    retry_cap_seconds: float = DEFAULT_RETRY_CAP
    # gunicorn web workers when `serve --workers` is not given (None: 2*CPU+1).
    web_concurrency: int | None = None
    # WEBHOOK_DATABASE_URL when it names PostgreSQL (a password inside: kept out of repr);
    # None for SQLite, whose file is db_path (a sqlite:/// URL sets db_path).
    database_url: str | None = field(default=None, repr=False)

    @property
    def storage_location(self) -> str:
        """Where the storage lives: the PostgreSQL URL, else the SQLite file's path."""
        return self.database_url or str(self.db_path)

    @property
    def storage_label(self) -> str:
        """`storage_location` without any password, for messages and logs."""
        return redact_url(self.database_url) if self.database_url else str(self.db_path)

    @property
    def hook_max_body_bytes(self) -> int:
        """Azure DevOps hook bodies may be large; that route accepts at least 2 MB."""
        return max(self.max_body_bytes, HOOK_MIN_BODY)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the environment, failing with one clear message."""
        env = os.environ if env is None else env
        admin_token = env.get("WEBHOOK_ADMIN_TOKEN", "").strip()
        if not admin_token:
            raise SettingsError(
                "WEBHOOK_ADMIN_TOKEN is not set: set it to a long random string "
                "(or run `ado-webhook serve --dev` to generate one)"
            )
        if len(admin_token) < 16:
            raise SettingsError("WEBHOOK_ADMIN_TOKEN is too short: use at least 16 characters")
        keys = tuple(k.strip() for k in env.get("WEBHOOK_SECRET_KEY", "").split(",") if k.strip())
        if not keys:
            raise SettingsError(
                "WEBHOOK_SECRET_KEY is not set: generate one with "
                '`python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"` (or run `ado-webhook serve --dev`)'
            )
        for key in keys:
            try:
                Fernet(key)
            except (ValueError, TypeError):
                raise SettingsError(
                    "WEBHOOK_SECRET_KEY is invalid: each comma-separated key must be a "
                    "32-byte url-safe base64 Fernet key"
                ) from None
        register_secret(admin_token)
        for key in keys:
            register_secret(key)
        public_url = env.get("WEBHOOK_PUBLIC_URL", "").strip().rstrip("/") or None
        if public_url and not public_url.startswith(("https://", "http://")):
            raise SettingsError("WEBHOOK_PUBLIC_URL must start with https:// (or http://)")
        hosts = frozenset(
            h.strip().lower()
            for h in env.get("WEBHOOK_ALLOWED_ORG_HOSTS", "").split(",")
            if h.strip()
        )
        log_level = env.get("WEBHOOK_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"WEBHOOK_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        retry_base = _positive_seconds(env, "WEBHOOK_RETRY_BASE_SECONDS", DEFAULT_RETRY_BASE)
        retry_cap = _positive_seconds(env, "WEBHOOK_RETRY_CAP_SECONDS", DEFAULT_RETRY_CAP)
        concurrency = _read_int(env, "WEB_CONCURRENCY", "a whole number")
        if concurrency is not None and concurrency <= 0:
            raise SettingsError(f"WEB_CONCURRENCY must be positive, got {concurrency}")
        authority = _entra_authority(env.get("WEBHOOK_ENTRA_AUTHORITY", "").strip(), hosts)
        db_path, database_url = _database(env)
        return cls(
            db_path=db_path,
            database_url=database_url,
            admin_token=admin_token,
            secret_keys=keys,
            public_url=public_url,
            allowed_org_hosts=hosts,
            max_body_bytes=_positive_int(env, "WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY),
            entra_authority=authority or DEFAULT_ENTRA_AUTHORITY,
            hook_check_seconds=_positive_int(env, "WEBHOOK_HOOK_CHECK_SECONDS", 3600, maximum=3600),
            reconcile_seconds=_positive_int(env, "WEBHOOK_RECONCILE_SECONDS", 900),
            log_level=log_level,
            content_sync_seconds=_whole_seconds(
                env, "WEBHOOK_CONTENT_SYNC_SECONDS", 60, maximum=MAX_CONTENT_SYNC_SECONDS
            ),
            retry_base_seconds=retry_base,
            retry_cap_seconds=max(retry_cap, retry_base),
            web_concurrency=concurrency,
        )


def _database(env: Mapping[str, str]) -> tuple[Path, str | None]:
    """(SQLite path, PostgreSQL URL or None) from WEBHOOK_DATABASE_URL and WEBHOOK_DB (SPEC 2:
    the URL wins; webhook.domain.database_url parses it). Raises SettingsError naming the
    variable; a password is never echoed, and is registered with the log redaction."""
    db_path = Path(env.get("WEBHOOK_DB", "").strip() or DEFAULT_DB)
    raw = env.get("WEBHOOK_DATABASE_URL", "").strip()
    if not raw:
        return db_path, None
    try:
        parsed = parse_database_url(raw)
    except DatabaseUrlError as exc:
        raise SettingsError(f"WEBHOOK_DATABASE_URL is invalid: {exc}") from None
    if parsed.path is not None:
        return Path(parsed.path), None
    if parsed.password:
        register_secret(parsed.password)
    return db_path, parsed.url


def _entra_authority(raw: str, allowed_hosts: frozenset[str]) -> str | None:
    """WEBHOOK_ENTRA_AUTHORITY normalized (no trailing slash), None when unset.

    The rules of webhook.ado.validate_authority (https with a host; no user info, query or
    fragment), and, as for organization URLs (SPEC 2, WEBHOOK_ALLOWED_ORG_HOSTS), http only
    for a loopback host listed there (`host` or `host:port`). Raises SettingsError naming the
    variable; the value itself is not echoed (it might carry a password).
    """
    if not raw:
        return None
    try:
        authority = validate_authority(raw)
    except ValueError as exc:
        raise SettingsError(f"WEBHOOK_ENTRA_AUTHORITY is invalid: {exc}") from None
    parts = urlsplit(authority)
    if parts.scheme.lower() == "http":
        netloc = parts.netloc.lower()
        bare = netloc[: -len(":80")] if netloc.endswith(":80") else netloc
        if netloc not in allowed_hosts and bare not in allowed_hosts:
            raise SettingsError(
                "WEBHOOK_ENTRA_AUTHORITY is invalid: http is allowed only for loopback hosts "
                f"listed in WEBHOOK_ALLOWED_ORG_HOSTS; {netloc} is not listed"
            )
    return authority


def _read_int(env: Mapping[str, str], name: str, what: str) -> int | None:
    """The variable as a whole number, None when unset; SettingsError naming it otherwise."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, got {raw!r}") from None


def _positive_int(
    env: Mapping[str, str], name: str, default: int, maximum: int | None = None
) -> int:
    value = _read_int(env, name, "a whole number")
    if value is None:
        return default
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum} (the SPEC asks for at least hourly)")
    return value


def _whole_seconds(env: Mapping[str, str], name: str, default: int, *, maximum: int) -> int:
    """A number of seconds from 0 (no waiting) to maximum; SettingsError naming the variable."""
    value = _read_int(env, name, "a whole number of seconds")
    if value is None:
        return default
    if not 0 <= value <= maximum:
        raise SettingsError(f"{name} must be between 0 and {maximum} seconds, got {value}")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds (fractions allowed); SettingsError naming the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value
