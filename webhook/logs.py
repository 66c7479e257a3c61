"""Structured JSON logging with request/delivery/job context and secret redaction.

Every log line is one JSON object on stderr::

    {"ts": "2024-05-01T12:00:00.123Z", "level": "INFO", "logger": "webhook.api",
     "msg": "risk stored", "request_id": "...", "risk_id": 7}

* ``configure_logging(level)`` installs the one handler on the root logger (idempotent).
* ``request_context(**ids)`` / ``bind(**ids)`` put ``request_id``, ``delivery_id``, ``job_id``
  (or any other id) on every line emitted inside them. They use :mod:`contextvars`, so each
  thread (gunicorn gthread workers, the sync worker's threads) has its own ids.
* ``RedactingFilter`` sits on the handler, so it covers every logger that reaches it
  (ours, gunicorn, werkzeug, urllib3, ...). It scrubs credentials from the message, the
  %-arguments, ``extra`` fields and exception text. Secrets known at runtime (admin token,
  Fernet keys, decrypted PATs) are added with ``register_secret``.
* ``gunicorn_logconfig_dict()`` gives gunicorn's ``logconfig_dict`` the same JSON format and
  filter; with ``GUNICORN_ACCESS_LOG_FORMAT`` access lines become structured JSON too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

__all__ = [
    "GUNICORN_ACCESS_LOG_FORMAT",
    "REDACTED",
    "JsonFormatter",
    "JsonStreamHandler",
    "RedactingFilter",
    "bind",
    "clear_context",
    "configure_logging",
    "current_context",
    "gunicorn_logconfig_dict",
    "redact",
    "redact_text",
    "register_secret",
    "request_context",
    "unbind",
]

REDACTED = "[REDACTED]"

# --------------------------------------------------------------------------------------------
# Context ids (contextvars: per thread and per asyncio task, never shared between requests)
# --------------------------------------------------------------------------------------------

_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("adowh_log_context", default=None)


def current_context() -> dict[str, Any]:
    """The ids bound in the current context (a copy)."""
    return dict(_CONTEXT.get() or {})


def bind(**ids: Any) -> Token[dict[str, Any] | None]:
    """Add ids (``request_id=...``, ``job_id=...``) to every following line of this context.

    A value of ``None`` removes that id. Returns a token for :func:`unbind`; a long-running
    thread (the sync worker) may also just call ``bind`` again for the next job.
    """
    merged = dict(_CONTEXT.get() or {})
    for key, value in ids.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return _CONTEXT.set(merged)


def unbind(token: Token[dict[str, Any] | None]) -> None:
    """Undo a :func:`bind` (restores the ids that were bound before it)."""
    try:
        _CONTEXT.reset(token)
    except ValueError:  # token from another context (e.g. another thread): just clear
        _CONTEXT.set(None)


def clear_context() -> None:
    """Drop every bound id in the current context."""
    _CONTEXT.set(None)


@contextlib.contextmanager
def request_context(**ids: Any) -> Iterator[dict[str, Any]]:
    """``with request_context(request_id=rid): ...`` binds ids for the block, then restores."""
    token = bind(**ids)
    try:
        yield current_context()
    finally:
        unbind(token)


# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------

# Every pattern below sees untrusted text (gunicorn logs request lines and header names a client
# wrote), so each must run in time linear in its input: no lazy or greedy prefix that is re-scanned
# from every start position, no ambiguous nested repetition. Runs of token characters are matched
# possessively (`*+`, Python 3.11+) and may only start where such a run starts (a lookbehind), so
# each character is scanned a bounded number of times. tests/test_regex_linear.py feeds 64 KB
# pathological strings to every pattern. On top of that, text is cut to MAX_TEXT_CHARS (and
# exception text to MAX_EXC_CHARS) before the patterns run; see `_cap`.

# A key whose value is a credential: ends with one of these words ("admin_token",
# "webhook-signature", "client_secret", "basicAuthPassword", "x-api-key"), or is exactly "pat".
_KEY_NAMES = (
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "signature",
    "api_key",
    "api-key",
    "apikey",
    "credential",
    "private_key",
    "private-key",
    "privatekey",
    "cookie",
    "session_key",
    "session-key",
    "sessionkey",
)
_KEY_WORDS = (
    r"(?:token|passw(?:or)?d|secret|authorization|signature|api[_-]?key|credential"
    r"|private[_-]?key|cookie|session[_-]?key)s?"
)
# Matched against at most the last MAX_KEY_CHARS characters of a key (see _is_sensitive_key).
_SENSITIVE_KEY_RE = re.compile(rf"^(?:[\w.-]*?{_KEY_WORDS}|pat)$", re.IGNORECASE)
MAX_KEY_CHARS = 64


def _ends_with_key_word() -> str:
    """One lookbehind per word length: "the token just matched ends with a key word"."""
    words = {w for base in _KEY_NAMES for w in (base, base + "s")}
    by_length: dict[int, list[str]] = {}
    for word in sorted(words):
        by_length.setdefault(len(word), []).append(re.escape(word))
    ends = [f"(?<={'|'.join(group)})" for _, group in sorted(by_length.items())]
    ends.append(r"(?<=(?<!\w)pat)")  # "pat" on its own: "pat", "x.pat", not "compat"
    return "(?:" + "|".join(ends) + ")"


_AUTH_HEADER_RE = re.compile(
    r"""(?P<k>\b(?:proxy-)?authorization["']?\s*+[:=]\s*+["']?)"""
    r"""(?:(?:basic|bearer|token|negotiate|ntlm|digest)\s++)?(?!\[REDACTED\])[^\s"',;}]++""",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"\b(?P<k>bearer\s++)(?!\[REDACTED\])[A-Za-z0-9\-._~+/]{8,}+=*+", re.I)
_BASIC_RE = re.compile(
    r"\b(?P<k>basic\s++)(?P<v>[A-Za-z0-9+/]{4,}+={0,2}+)(?![A-Za-z0-9+/=])", re.I
)
_WHSEC_RE = re.compile(r"whsec_[A-Za-z0-9+/=_\-]*+")
_SIGNATURE_RE = re.compile(r"\b(?P<k>v1a?,)[A-Za-z0-9+/]{16,}+={0,2}+")
# scheme://user:password@ — the scheme is bounded (32 characters; real ones are short), so each
# start position costs a bounded scan before "://" and the pattern needs no start anchor.
_URL_PASSWORD_RE = re.compile(
    r"""(?P<k>[a-z][a-z0-9+.\-]{0,31}+://[^\s/@:"'<>]*+)"""
    r""":(?!\[REDACTED\]@)[^\s/@"'<>]*+@""",
    re.IGNORECASE,
)
_FERNET_RE = re.compile(r"gAAAAA[A-Za-z0-9_\-]{20,}+={0,2}+")
_JWT_RE = re.compile(
    r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{5,}+\.eyJ[A-Za-z0-9_\-]{5,}+\.[A-Za-z0-9_\-]*+"
)
# Azure DevOps personal access tokens: legacy 52-char base32, current 84-char with "AZDO".
_ADO_PAT_RE = re.compile(r"\b(?:[a-z2-7]{52}|[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4})\b")
# key = value, key: "value", "key": 'value', key=\"value\" (JSON inside a string) ...
# The key is a whole run of [\w.-] (possessive, starting where such a run starts) that ends with
# a key word; the value a quoted string or a run of non-delimiters.
_KEY_VALUE_RE = re.compile(
    rf"""(?P<k>["']?(?<![\w.-])[\w.-]++{_ends_with_key_word()}\\?["']?\s*+[:=]\s*+)"""
    r"""(?!\[REDACTED\])(?P<v>\\"[^"]*?\\"|b?"(?:[^"\\]++|\\.)*+"|b?'(?:[^'\\]++|\\.)*+'"""
    r"""|[^\s,;&}\])"'<>]++)""",
    re.IGNORECASE,
)

MAX_TEXT_CHARS = 16 * 1024
"""Characters of one logged value (message, extra field) kept; the middle of longer text is cut."""
MAX_EXC_CHARS = 64 * 1024
"""Characters of a traceback or stack kept (its start and its end, where the error is)."""
_MAX_RAW_CHARS = 256 * 1024  # before even registered secrets are looked for
_ALIGN = 512  # how far a cut may move to land on whitespace
_WHITESPACE = re.compile(r"\s")


def _cap(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters: its start and end, a marker in the middle.

    Each cut moves (up to 512 characters) to the nearest whitespace, away from the kept
    text, so a credential straddling a cut is dropped whole rather than left in two pieces
    that no pattern recognizes. Without whitespace nearby, 512 more characters are dropped.
    """
    if len(text) <= limit:
        return text
    half = limit // 2
    head_end = max(text.rfind(c, half - _ALIGN, half) for c in " \t\n")
    if head_end < 0:
        head_end = half - _ALIGN
    tail_from = len(text) - half
    space = _WHITESPACE.search(text, tail_from, tail_from + _ALIGN)
    tail_start = space.end() if space else tail_from + _ALIGN
    return f"{text[:head_end]} …[{tail_start - head_end} characters cut]… {text[tail_start:]}"


def _basic_sub(match: re.Match[str]) -> str:
    value = match.group("v")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    if b":" not in decoded:  # plain prose such as "Basic process", not user:password
        return match.group(0)
    return match.group("k") + REDACTED


def _key_value_sub(match: re.Match[str]) -> str:
    value = match.group("v")
    if value.startswith('\\"'):
        return f'{match.group("k")}\\"{REDACTED}\\"'
    body = value[1:] if value[:1] == "b" and value[1:2] in "\"'" and len(value) > 1 else value
    if body[:1] in "\"'" and body[-1:] == body[:1] and len(body) >= 2:
        return f"{match.group('k')}{body[0]}{REDACTED}{body[0]}"
    return match.group("k") + REDACTED


_MAX_SECRETS = 1024
_MIN_SECRET_LEN = 8
_secrets_lock = threading.Lock()
_secrets: dict[str, tuple[str, ...]] = {}  # secret -> its variants; insertion order = LRU
_secret_variants: tuple[str, ...] = ()  # every variant, longest first
_secrets_dirty = False


def register_secret(value: str | None) -> None:
    """Scrub ``value`` (and its URL-encoded and ``Basic`` header forms) from all log output.

    Call it for the admin token, each Fernet key, and every PAT / client secret / source secret
    when it is decrypted. Strings shorter than 8 characters are ignored (they would mangle
    ordinary text); at most 1024 secrets are kept, the least recently registered forgotten
    first. Cheap to call again with a known secret.
    """
    global _secrets_dirty
    if not isinstance(value, str):
        return
    value = value.strip()
    if len(value) < _MIN_SECRET_LEN:
        return
    with _secrets_lock:
        if value in _secrets:
            _secrets[value] = _secrets.pop(value)  # refresh its place; variants unchanged
            return
        variants = {value, quote(value, safe="")}
        for userinfo in (f":{value}", f"{value}:"):
            variants.add(base64.b64encode(userinfo.encode()).decode())
        _secrets[value] = tuple(variants)
        while len(_secrets) > _MAX_SECRETS:
            _secrets.pop(next(iter(_secrets)))
        _secrets_dirty = True


def _known_secrets() -> tuple[str, ...]:
    """Every variant of every registered secret, longest first (rebuilt lazily after changes)."""
    global _secret_variants, _secrets_dirty
    if _secrets_dirty:
        with _secrets_lock:
            if _secrets_dirty:
                variants = {v for group in _secrets.values() for v in group}
                _secret_variants = tuple(sorted(variants, key=len, reverse=True))
                _secrets_dirty = False
    return _secret_variants


def _forget_secrets() -> None:  # for tests
    global _secret_variants, _secrets_dirty
    with _secrets_lock:
        _secrets.clear()
        _secret_variants = ()
        _secrets_dirty = False


def _replace_secrets(text: str) -> str:
    """Registered secrets out of `text`: one C-speed substring search per variant (linear)."""
    for variant in _known_secrets():  # longest first: a secret inside a longer one goes with it
        if variant in text:
            text = text.replace(variant, REDACTED)
    return text


def redact_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Replace every credential pattern and registered secret in ``text`` with [REDACTED].

    Text longer than ``limit`` characters is cut in the middle first (see `_cap`), so the cost
    is bounded whatever a client sends: registered secrets are replaced before that cut (in at
    most 256 KiB), the patterns after it.
    """
    if not text:
        return text
    text = _replace_secrets(_cap(text, _MAX_RAW_CHARS))
    text = _cap(text, limit)
    text = _AUTH_HEADER_RE.sub(lambda m: m.group("k") + REDACTED, text)
    text = _BEARER_RE.sub(lambda m: m.group("k") + REDACTED, text)
    text = _BASIC_RE.sub(_basic_sub, text)
    text = _WHSEC_RE.sub(REDACTED, text)
    text = _SIGNATURE_RE.sub(lambda m: m.group("k") + REDACTED, text)
    text = _URL_PASSWORD_RE.sub(lambda m: m.group("k") + ":" + REDACTED + "@", text)
    text = _FERNET_RE.sub(REDACTED, text)
    text = _JWT_RE.sub(REDACTED, text)
    text = _ADO_PAT_RE.sub(REDACTED, text)
    return _KEY_VALUE_RE.sub(_key_value_sub, text)


def _is_sensitive_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    if key.startswith("{") and "}" in key:  # gunicorn atoms: "{authorization}i"
        key = key[1 : key.index("}")]
    # The pattern is anchored at both ends and its prefix is [\w.-]*: a key matches exactly
    # when its last MAX_KEY_CHARS characters do (or, cut, errs towards redacting).
    return bool(_SENSITIVE_KEY_RE.match(key[-MAX_KEY_CHARS:]))


def redact(value: Any, _depth: int = 0) -> Any:
    """Redact a JSON-like structure: sensitive keys' values, patterns in every string.

    Numbers, booleans and ``None`` are kept (even under a sensitive key: ``"token_valid": true``
    is not a secret); other objects become their redacted ``str``.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if _depth > 8:
        return "[...]"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            skey = key if isinstance(key, str) else str(key)
            if _is_sensitive_key(skey) and not (
                item is None or isinstance(item, bool | int | float)
            ):
                out[skey] = REDACTED
            else:
                out[skey] = redact(item, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item, _depth + 1) for item in value]
    return redact_text(str(value))


def _redact_arg(value: Any, _depth: int = 0) -> Any:
    """Redact a %-argument while keeping its type where %-formatting cares (numbers, objects)."""
    if isinstance(value, Mapping):
        return redact(value, _depth)
    if isinstance(value, list):
        return [_redact_arg(v, _depth + 1) for v in value]
    if isinstance(value, tuple) and _depth < 8:
        return tuple(_redact_arg(v, _depth + 1) for v in value)
    return value  # strings and objects are covered by the pass over the final message


class _RedactingMapping(dict):  # type: ignore[type-arg]
    """Mapping %-args (gunicorn access atoms) redacted lazily, key by key."""

    def __init__(self, original: Mapping[str, Any]) -> None:
        # Only the keys are copied (for truthiness); values are read, redacted, on lookup.
        super().__init__(dict.fromkeys(original, REDACTED))
        self._original = original

    def __getitem__(self, key: str) -> Any:
        value = self._original[key]
        if _is_sensitive_key(key) and isinstance(value, str | bytes) and value not in ("", "-"):
            return REDACTED
        return redact(value) if isinstance(value, str | bytes) else value


_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
_CORE_IDS = ("request_id", "delivery_id", "job_id")
_PLAIN_FORMATTER = logging.Formatter()


def _redact_record(record: logging.LogRecord) -> None:
    """Scrub a record in place (message, args, extras, exception); idempotent."""
    if getattr(record, "_adowh_redacted", False):
        return
    record._adowh_redacted = True  # type: ignore[attr-defined]
    if not hasattr(record, "_adowh_ctx"):
        record._adowh_ctx = current_context()  # type: ignore[attr-defined]

    args = record.args
    if isinstance(args, Mapping):
        record.args = _RedactingMapping(args)
    else:
        if args:
            record.args = _redact_arg(args)
        try:
            message = record.getMessage()
        except Exception:  # malformed format/args: keep both, never lose the line
            message = f"{record.msg!s} (args: {args!r})"
        record.msg = redact_text(message)
        record.args = None

    for key, value in list(record.__dict__.items()):
        if key in _STANDARD_ATTRS or key.startswith("_adowh_"):
            continue
        if key == "fields" and isinstance(value, Mapping):
            record.fields = redact(value)  # type: ignore[attr-defined]
        elif _is_sensitive_key(key) and not (
            value is None or isinstance(value, bool | int | float)
        ):
            setattr(record, key, REDACTED)
        else:
            setattr(record, key, redact(value))

    if record.exc_info and not record.exc_text:
        record.exc_text = _PLAIN_FORMATTER.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text, MAX_EXC_CHARS)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info, MAX_EXC_CHARS)


class RedactingFilter(logging.Filter):
    """Handler filter that removes credentials from every record passing the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            _redact_record(record)
        except Exception:  # pragma: no cover - redaction must never drop a line unredacted
            record.msg = "log record could not be redacted; dropped its content"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


# --------------------------------------------------------------------------------------------
# JSON formatting
# --------------------------------------------------------------------------------------------

GUNICORN_ACCESS_LOG_FORMAT = (
    '{"method": "%(m)s", "path": "%(U)s", "status": "%(s)s", "duration_ms": "%(M)s", '
    '"bytes": "%(b)s", "remote_addr": "%(h)s", "request_id": "%({x-request-id}o)s"}'
)
"""gunicorn ``access_log_format``: path without the query string, response ``X-Request-Id``."""


class _JsonEscapingMapping(dict):  # type: ignore[type-arg]
    """Wraps gunicorn's atoms so each substituted value is a valid JSON string body."""

    def __init__(self, original: Mapping[str, Any]) -> None:
        super().__init__(dict.fromkeys(original, ""))
        self._original = original

    def __getitem__(self, key: str) -> str:
        value = self._original[key]
        if isinstance(value, str):
            value = value.replace('\\"', '"')  # undo gunicorn's SafeAtoms quote escaping
        return json.dumps("" if value is None else str(value), ensure_ascii=False)[1:-1]


def _access_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    if not isinstance(record.args, Mapping) or not isinstance(record.msg, str):
        return None
    try:
        parsed = json.loads(record.msg % _JsonEscapingMapping(record.args))
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(parsed, dict):
        return None
    fields: dict[str, Any] = {}
    for key, value in parsed.items():
        if value in ("-", "", None):
            continue
        if key in ("status", "bytes", "duration_ms") and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(value)
        fields[key] = value
    return fields


def _json_default(value: Any) -> str:
    return redact_text(str(value))


# What json.dumps(ensure_ascii=False) leaves raw but a line-based reader would split a line at
# (str.splitlines also breaks at U+0085, U+2028, U+2029; json already escapes \x0b \x0c \x1c-\x1e),
# and lone surrogates, which no UTF-8 stream can carry.
_UNSAFE_IN_LINE = re.compile("[\x85\u2028\u2029\ud800-\udfff]")


def _escape_separators(line: str) -> str:
    """`line` (JSON text) with line separators and lone surrogates written as \\uXXXX escapes."""
    if line.isascii():
        return line
    return _UNSAFE_IN_LINE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (ts, level, logger, msg, ids, extras, exc)."""

    def format(self, record: logging.LogRecord) -> str:
        _redact_record(record)  # also safe when used without the filter
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        access = _access_fields(record) if record.name == "gunicorn.access" else None
        if access is not None:
            line["msg"] = " ".join(
                str(access[k]) for k in ("method", "path", "status") if k in access
            )
        else:
            line["msg"] = record.getMessage()

        context = getattr(record, "_adowh_ctx", None) or current_context()
        for key in _CORE_IDS:
            if key in context:
                line[key] = context[key]
        for key, value in context.items():
            line.setdefault(key, value)

        extras: dict[str, Any] = {}
        if access:
            extras.update(access)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            extras.update(fields)
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key == "fields" or key.startswith("_adowh_"):
                continue
            extras[key] = value
        for key, value in extras.items():
            if key in ("ts", "level", "logger", "msg", "exc", "stack"):
                key = f"{key}_"
            line[key] = value

        if record.exc_text:
            line["exc"] = record.exc_text
        elif record.exc_info:
            line["exc"] = redact_text(
                "".join(traceback.format_exception(*record.exc_info)), MAX_EXC_CHARS
            )
        if record.stack_info:
            line["stack"] = record.stack_info
        return _escape_separators(json.dumps(line, ensure_ascii=False, default=_json_default))


class JsonStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """StreamHandler with the JSON formatter and the redaction filter built in.

    Without an explicit stream it writes to whatever ``sys.stderr`` is at emit time.
    """

    _adowh_handler = True

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._fixed_stream = stream
        super().__init__(stream)
        self.setFormatter(JsonFormatter())
        self.addFilter(RedactingFilter())

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return self._fixed_stream if self._fixed_stream is not None else sys.stderr

    @stream.setter
    def stream(self, value: IO[str] | None) -> None:
        self._fixed_stream = value if value is not sys.stderr else None

    def addFilter(self, filter: Any) -> None:
        if isinstance(filter, RedactingFilter) and any(
            isinstance(f, RedactingFilter) for f in self.filters
        ):
            return
        super().addFilter(filter)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        # dictConfig may pass a plain formatter; keep JSON lines whatever it asks for.
        super().setFormatter(fmt if isinstance(fmt, JsonFormatter) else JsonFormatter())


# --------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------

# Libraries that log every connection/request at INFO/DEBUG; kept at WARNING unless DEBUG.
_NOISY_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "requests",
    "charset_normalizer",
    "werkzeug",
    "markdown_it",
    "asyncio",
    "hpack",
    "hypothesis",
    "filelock",
)


def _level_number(level: str | int | None) -> tuple[int, bool]:
    if isinstance(level, int):
        return level, True
    text = (level or "INFO").strip().upper()
    if text.isdigit():
        return int(text), True
    if text == "WARN":
        text = "WARNING"
    number = logging.getLevelNamesMapping().get(text)
    if number is None:
        return logging.INFO, False
    return number, True


def configure_logging(level: str | int = "INFO", *, stream: IO[str] | None = None) -> None:
    """JSON lines on stderr for every logger, redacted; calling it again just reconfigures.

    ``level`` is a level name (``WEBHOOK_LOG_LEVEL``); an unknown name falls back to INFO with
    a warning. ``stream`` is for tests (default: the current ``sys.stderr``).
    """
    number, valid = _level_number(level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_adowh_handler", False):
            root.removeHandler(handler)
            with contextlib.suppress(Exception):
                handler.flush()
    handler = JsonStreamHandler(stream)
    root.addHandler(handler)
    root.setLevel(number)

    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(
            logging.NOTSET if number <= logging.DEBUG else logging.WARNING
        )

    # Flask adds its own plain-text handler to app loggers created before logging was set up.
    flask_logging = sys.modules.get("flask.logging")
    default_handler = getattr(flask_logging, "default_handler", None)
    if default_handler is not None:
        for logger in list(logging.root.manager.loggerDict.values()):
            if isinstance(logger, logging.Logger) and default_handler in logger.handlers:
                logger.removeHandler(default_handler)

    if not valid:
        logging.getLogger(__name__).warning(
            "unknown log level %r, using INFO",
            level,
            extra={"fields": {"setting": "WEBHOOK_LOG_LEVEL"}},
        )


def gunicorn_logconfig_dict(level: str | int | None = None) -> dict[str, Any]:
    """A gunicorn ``logconfig_dict``: the same JSON lines and redaction for gunicorn's loggers.

    gunicorn's error and access loggers get no handler of their own and propagate to the root
    handler (stderr), so their lines look like the application's. The access logger stays at
    INFO whatever the level. ``level`` defaults to ``$WEBHOOK_LOG_LEVEL`` or INFO.
    """
    number, _ = _level_number(level if level is not None else os.environ.get("WEBHOOK_LOG_LEVEL"))
    name = logging.getLevelName(number)
    noisy = "NOTSET" if number <= logging.DEBUG else "WARNING"
    loggers: dict[str, Any] = {
        "gunicorn.error": {"level": name, "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
    }
    for logger in _NOISY_LOGGERS:
        loggers[logger] = {"level": noisy, "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "webhook.logs.RedactingFilter"}},
        "formatters": {"json": {"()": "webhook.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "webhook.logs.JsonStreamHandler",
                "formatter": "json",
                "filters": ["redact"],
            }
        },
        "root": {"level": name, "handlers": ["stderr"]},
        "loggers": loggers,
    }
