"""JSON log lines on structlog: context ids, stdlib and gunicorn records, secret redaction.

Every log line is one JSON object on stderr::

    {"ts": "2024-05-01T12:00:00.123Z", "level": "INFO", "logger": "webhook.api",
     "msg": "risk stored", "request_id": "...", "risk_id": 7}

* ``configure_logging(level)`` puts one :class:`JsonStreamHandler` on the root logger. Its
  formatter is structlog's ``ProcessorFormatter``: stdlib records (ours, gunicorn, werkzeug,
  urllib3, ...) and structlog loggers go through the same processors into the same lines.
* ``request_context(**ids)`` / ``bind(**ids)`` put ``request_id``, ``delivery_id``, ``job_id``
  (or any other id) on every line emitted inside them: thin wrappers over
  ``structlog.contextvars``, so each thread (gunicorn gthread workers, the sync worker's
  threads) has its own ids.
* The project's redaction (sensitive keys, credential patterns, secrets registered at runtime
  with ``register_secret``, length caps) is a processor: it covers the message (%-arguments
  redacted before formatting), every field, and the traceback.
* ``gunicorn_logconfig_dict()`` gives gunicorn's ``logconfig_dict`` the same handler; with
  ``GUNICORN_ACCESS_LOG_FORMAT`` access lines become structured JSON too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextvars import Token
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars
from structlog.processors import JSONRenderer, format_exc_info
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict

__all__ = [
    "GUNICORN_ACCESS_LOG_FORMAT",
    "REDACTED",
    "JsonFormatter",
    "JsonStreamHandler",
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
# Context ids: structlog.contextvars (per thread and per asyncio task, never shared)
# --------------------------------------------------------------------------------------------


def current_context() -> dict[str, Any]:
    """The ids bound in the current context (a copy)."""
    return {key: value for key, value in get_contextvars().items() if value is not None}


def bind(**ids: Any) -> Mapping[str, Token[Any]]:
    """Add ids (``request_id=...``, ``job_id=...``) to every following line of this context.

    A value of ``None`` removes that id. Returns the tokens :func:`unbind` restores from; a
    long-running thread (the sync worker) may also just call ``bind`` again for the next job.
    """
    return bind_contextvars(**ids)


def unbind(tokens: Mapping[str, Token[Any]]) -> None:
    """Undo a :func:`bind`: its ids get back the values they had before it (or none)."""
    try:
        structlog.contextvars.reset_contextvars(**tokens)
    except ValueError:  # tokens from another context (e.g. another thread): just drop the ids
        bind_contextvars(**dict.fromkeys(tokens))


def clear_context() -> None:
    """Drop every bound id in the current context."""
    structlog.contextvars.clear_contextvars()


@contextlib.contextmanager
def request_context(**ids: Any) -> Iterator[dict[str, Any]]:
    """``with request_context(request_id=rid): ...`` binds ids for the block, then restores."""
    tokens = bind(**ids)
    try:
        yield current_context()
    finally:
        unbind(tokens)


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


# --------------------------------------------------------------------------------------------
# JSON lines: structlog's ProcessorFormatter with the processors below
# --------------------------------------------------------------------------------------------

# gunicorn access atoms written as fields of the access line (see gunicorn's access_log_format).
_ACCESS_ATOMS = {
    "method": "m",
    "path": "U",
    "status": "s",
    "duration_ms": "M",
    "bytes": "b",
    "remote_addr": "h",
    "request_id": "{x-request-id}o",
}
GUNICORN_ACCESS_LOG_FORMAT = json.dumps({key: f"%({atom})s" for key, atom in _ACCESS_ATOMS.items()})
"""gunicorn ``access_log_format``: path without the query string, response ``X-Request-Id``."""

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
_CORE_IDS = ("request_id", "delivery_id", "job_id")
# The line's own keys and those structlog's processors work with: a field of one of these names
# is written with a trailing "_" ("msg_").
_RESERVED = frozenset(
    {"ts", "level", "logger", "msg", "exc", "stack", "event", "exception", "exc_info", "stack_info"}
)


def _stdlib_fields(_: Any, __: str, event: EventDict) -> EventDict:
    """Processor for stdlib records: their ``extra`` attributes (``fields`` flattened)."""
    for key, value in event["_record"].__dict__.items():
        if key not in _STANDARD_ATTRS:
            fields = value if key == "fields" and isinstance(value, Mapping) else {key: value}
            for name, item in fields.items():
                event[f"{name}_" if name in _RESERVED or name[:1] == "_" else name] = item
    return event


def _merge_context(_: Any, __: str, event: EventDict) -> EventDict:
    """Processor: the bound ids (one bound to None is absent); a field of the same name wins."""
    for key, value in get_contextvars().items():
        if value is not None:
            event.setdefault(key, value)
    return event


def _format_message(_: Any, __: str, event: EventDict) -> EventDict:
    """Processor: ``event`` %-formatted with its arguments redacted first.

    Arguments are redacted before formatting so that a dict's sensitive keys still count. A
    gunicorn access line written with GUNICORN_ACCESS_LOG_FORMAT becomes fields instead.
    """
    args, template = event.pop("positional_args", None), str(event.get("event", ""))
    if not args:
        return event
    if template == GUNICORN_ACCESS_LOG_FORMAT and isinstance(args, Mapping):
        for key, atom in _ACCESS_ATOMS.items():  # values redacted with every field, below
            value = args[atom]
            if isinstance(value, str):  # undo gunicorn's SafeAtoms quote escaping
                value = value.replace('\\"', '"')
            if value not in ("-", "", None):
                with contextlib.suppress(ValueError, TypeError):
                    value = int(value) if key in ("status", "bytes", "duration_ms") else value
                event[key] = value
        event["event"] = " ".join(str(event[k]) for k in ("method", "path", "status") if k in event)
        return event
    args = _RedactingMapping(args) if isinstance(args, Mapping) else _redact_arg(args)
    try:
        event["event"] = template % args
    except Exception:  # malformed format/args: keep both, never lose the line
        event["event"] = f"{template} (args: {args!r})"
    return event


_sensitive_key = functools.lru_cache(maxsize=1024)(_is_sensitive_key)


def _timestamp(record: logging.LogRecord) -> str:
    """``2024-05-01T12:00:00.123Z``: when the record was made, UTC, milliseconds."""
    created = datetime.fromtimestamp(record.created, tz=UTC)
    return created.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _redacted_line(_: Any, __: str, event: EventDict) -> dict[str, Any]:
    """Processor: the line in its key order (ts, level, logger, msg, ids, fields), redacted.

    Keys are names the code chose; one that is not a short identifier is scrubbed like text.
    """
    record: logging.LogRecord = event.pop("_record")
    event.pop("_from_structlog", None)
    line = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name}
    line["msg"] = redact_text(str(event.pop("event", "")))
    exc, stack = event.pop("exception", None), event.pop("stack_info", None)
    ids = {key: event.pop(key) for key in _CORE_IDS if key in event}
    for key, value in {**ids, **event}.items():
        key = str(key)
        if len(key) <= 32 and key.isidentifier():
            sensitive = _sensitive_key(key)  # cached: these are the code's names, and repeat
        else:
            key = redact_text(key)
            sensitive = _is_sensitive_key(key)
        if sensitive and not (value is None or isinstance(value, bool | int | float)):
            value = REDACTED
        line[f"{key}_" if key in _RESERVED else key] = redact(value)
    if exc:
        line["exc"] = redact_text(str(exc), MAX_EXC_CHARS)
    if isinstance(stack, str):
        line["stack"] = redact_text(stack, MAX_EXC_CHARS)
    return line


# What json.dumps(ensure_ascii=False) leaves raw but a line-based reader would split a line at
# (str.splitlines also breaks at U+0085, U+2028, U+2029; json already escapes \x0b \x0c \x1c-\x1e),
# and lone surrogates, which no UTF-8 stream can carry.
_UNSAFE_IN_LINE = re.compile("[\x85\u2028\u2029\ud800-\udfff]")


def _dumps(line: dict[str, Any], **kwargs: Any) -> str:
    """JSON text with line separators and lone surrogates written as \\uXXXX escapes."""
    text = json.dumps(line, **kwargs)
    if text.isascii():
        return text
    return _UNSAFE_IN_LINE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class JsonFormatter(ProcessorFormatter):
    """structlog's ProcessorFormatter with this module's processors: one redacted JSON line.

    Usable on any handler. A record whose formatting fails (an object whose ``str`` raises)
    still gives a line, without its content, instead of logging's report of the raw message.
    """

    def __init__(self) -> None:
        super().__init__(
            foreign_pre_chain=[_stdlib_fields],
            processors=[
                _merge_context,
                _format_message,
                format_exc_info,
                _redacted_line,
                JSONRenderer(_dumps, ensure_ascii=False, default=lambda v: redact_text(str(v))),
            ],
            pass_foreign_args=True,
            use_get_message=False,
        )

    def format(self, record: logging.LogRecord) -> str:
        try:
            return super().format(record)
        except Exception:
            dropped = "log record could not be formatted; dropped its content"
            line = {"ts": _timestamp(record), "level": record.levelname, "msg": dropped}
            return json.dumps({**line, "logger": record.name})


class JsonStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """StreamHandler writing :class:`JsonFormatter` lines to ``stream``.

    Without an explicit stream it writes to whatever ``sys.stderr`` is at emit time.
    """

    _adowh_handler = True

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._fixed_stream = stream
        super().__init__(stream)
        self.setFormatter(JsonFormatter())

    @property
    def stream(self) -> IO[str]:
        return self._fixed_stream if self._fixed_stream is not None else sys.stderr

    @stream.setter
    def stream(self, value: IO[str] | None) -> None:
        self._fixed_stream = value if value is not sys.stderr else None


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
    root.addHandler(JsonStreamHandler(stream))
    root.setLevel(number)
    # structlog loggers (structlog.get_logger()) hand their events to the same handler.
    structlog.configure(
        processors=[ProcessorFormatter.wrap_for_formatter],
        logger_factory=logging.getLogger,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

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
        "handlers": {"stderr": {"class": "webhook.logs.JsonStreamHandler"}},
        "root": {"level": name, "handlers": ["stderr"]},
        "loggers": loggers,
    }
