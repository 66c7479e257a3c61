"""Every regular expression that sees untrusted text runs in time linear in its input.

A pattern with a lazy or greedy prefix re-scanned from every start position (issue 10.1: an
8 KB invalid header name cost ~7 s of CPU in log redaction) is quadratic: on 64 KB it takes
seconds to minutes. This is a complexity guard, not a benchmark: a linear pattern needs
milliseconds on these inputs, the bound is 0.5 s of CPU per pattern and input.

Patterns are collected from the modules (every compiled module-level pattern in `webhook`
outside the Azure DevOps stand-in, and every regex validator of every marshmallow schema), so a
new pattern is covered without being listed here.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import pkgutil
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields, validate

import webhook
from webhook import logs, schemas
from webhook.domain import orgurl, rendering, templates

LIMIT_SECONDS = 0.5
N = 64 * 1024


def _modules() -> Iterator[Any]:
    for info in pkgutil.walk_packages(webhook.__path__, "webhook."):
        if info.name.startswith("webhook.sandbox"):  # the stand-in parses our own requests
            continue
        yield importlib.import_module(info.name)


def _schema_patterns() -> Iterator[tuple[str, re.Pattern[str]]]:
    """Regexes inside the validators of every inbound marshmallow schema."""

    def validators(field: fields.Field) -> Iterator[Any]:
        yield from field.validators
        inner = getattr(field, "inner", None)
        if inner is not None:
            yield from validators(inner)

    seen: set[type[Schema]] = set()
    queue = list(Schema.__subclasses__())
    while queue:
        cls = queue.pop()
        if cls in seen:
            continue
        seen.add(cls)
        queue.extend(cls.__subclasses__())
        if not cls.__module__.startswith("webhook."):
            continue
        for name, field in cls._declared_fields.items():
            for validator in validators(field):
                if isinstance(validator, validate.Regexp | schemas.FullMatch):
                    yield f"{cls.__name__}.{name}", validator.regex


def collect_patterns() -> dict[str, re.Pattern[str]]:
    found: dict[str, re.Pattern[str]] = {}
    for module in _modules():
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                found[f"{module.__name__}.{name}"] = value
    for name, pattern in _schema_patterns():
        found[f"webhook.schemas:{name}"] = pattern
    return found


PATTERNS = collect_patterns()


def _pathological() -> dict[str, str]:
    """64 KB strings that make a backtracking engine re-scan: repetitions with no ending."""
    text = {
        "a.": "a." * (N // 2),
        "a.@": "a." * (N // 2) + "@",
        "a!": "a" * N + "!",
        "a": "a" * N,
        "@": "@" * N,
        "spaces": " " * N + "x",
        "-": "-" * N,
        "a-": "a-" * (N // 2) + "!",
        "a:": "a:" * (N // 2),
        "a://": "a://" * (N // 4),
        "x://a:": "x://" + "a:" * (N // 2),
        "digits": "1" * N + "x",
        "A.": "A." * (N // 2) + "!",
        "{": "{" * N,
        "{a": "{" + "a" * N,
        "é": "é" * N + "!",
        "quotes": '\\"' * (N // 2),
        "backslashes": 'token="' + "\\" * N,
        "token=": "token=" * (N // 6),
        "key-quote": "password='" * (N // 10),
        "authorization": "authorization: " * (N // 15),
        "bearer": "bearer " * (N // 7),
        "basic": "basic " + "a" * N + "===",
        "v1,": "v1," * (N // 3),
        "eyJ-": "eyJ-" * (N // 4),
        "eyJ.": "eyJaaaaa." * (N // 9),
        "gAAAAA": "gAAAAA!" * (N // 7),
        "whsec": "whsec_" * (N // 6),
        "labels": "a" + "-a" * (N // 2) + "-",
        "dotted": "a" + ".a" * (N // 2) + ".-",
        "ipv6": "[" + "0:" * (N // 2),
        "TF": "TF" + "1" * N + "x",
        "revisions": "only work items with up to " + "1," * (N // 2),
        "percent": "%2e" * (N // 3),
        "placeholders": "{name" * (N // 5),
    }
    return text


INPUTS = _pathological()


def _cpu(run: Callable[[], object]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def test_the_patterns_are_found() -> None:
    """The collection sees the patterns the issue named (else this guard would be hollow)."""
    for name in (
        "webhook.logs._KEY_VALUE_RE",
        "webhook.logs._URL_PASSWORD_RE",
        "webhook.logs._SENSITIVE_KEY_RE",
        "webhook.domain.orgurl._URL_RE",
        "webhook.domain.orgurl._HOSTNAME_RE",
        "webhook.schemas._BAD_URL_CHARS",
        "webhook.schemas:SourceCreateSchema.name",
        "webhook.schemas:PatAuthSchema.token",
        "webhook.ado._TOKEN_RE",
    ):
        assert name in PATTERNS, sorted(PATTERNS)
    assert len(PATTERNS) >= 30


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_is_linear_on_pathological_input(name: str) -> None:
    pattern = PATTERNS[name]
    slow = []
    for label, text in INPUTS.items():
        # finditer is what search and sub do at every position; fullmatch and match anchor.
        for mode, run in (
            ("finditer", lambda p=pattern, t=text: sum(1 for _ in p.finditer(t))),
            ("fullmatch", lambda p=pattern, t=text: p.fullmatch(t)),
            ("match", lambda p=pattern, t=text: p.match(t)),
        ):
            seconds = _cpu(run)
            if seconds > LIMIT_SECONDS:
                slow.append(f"{mode} on {label!r}: {seconds:.2f}s")
    assert not slow, f"{name} ({pattern.pattern[:80]}) is not linear: {slow}"


# ---- whole functions that read untrusted text ------------------------------------------------


@pytest.mark.parametrize("label", sorted(INPUTS))
def test_text_checks_are_linear(label: str) -> None:
    text = INPUTS[label]
    checks: list[tuple[str, Callable[[], object]]] = [
        ("redact_text", lambda: logs.redact_text(text)),
        ("redact_text(exc)", lambda: logs.redact_text(text, logs.MAX_EXC_CHARS)),
        ("redact", lambda: logs.redact({text[:5000]: text, "token": text})),
        ("text_problem", lambda: schemas.text_problem(text)),
        ("path_name_problem", lambda: schemas.path_name_problem(text)),
        ("check_http_url", lambda: _swallow(schemas.check_http_url, "https://h/" + text)),
        ("organization url", lambda: _swallow(orgurl.parse_organization_url, text)),
        ("organization url path", lambda: _swallow(orgurl.parse_organization_url, "x://" + text)),
        ("title format", lambda: templates.validate_title_format(text)),
        ("comment marker", lambda: rendering.comment_has_marker(text, "adowh-event-7")),
    ]
    slow = [f"{what}: {s:.2f}s" for what, run in checks if (s := _cpu(run)) > LIMIT_SECONDS]
    assert not slow, slow


def _swallow(check: Callable[[str], object], value: str) -> None:
    with contextlib.suppress(ValueError, ValidationError):  # a refusal is an answer too
        check(value)


# ---- the request, through the real logging pipeline --------------------------------


def test_an_8kb_invalid_header_name_is_logged_redacted_at_once() -> None:
    """gunicorn logs the header name a client wrote; redaction must not stall the worker."""
    stream = io.StringIO()
    handler = logs.JsonStreamHandler(stream)
    logger = logging.getLogger("gunicorn.error.test-regex-linear")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    secret = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3"
    try:
        header = "a." * 4000 + "@"
        started = time.process_time()
        # What gunicorn.workers.base.handle_error logs for InvalidHeaderName (gunicorn 23+).
        logger.warning(
            "Invalid request from ip={ip}: {error}".format(
                ip="127.0.0.1", error=f"Invalid HTTP header name: {header + secret!r}"
            )
        )
        logger.info("GET /%s?token=%s", "a." * 2040, "s3cr3t-query-token")
        seconds = time.process_time() - started
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert seconds < LIMIT_SECONDS
    assert secret not in output and "s3cr3t-query-token" not in output
    assert output.count(logs.REDACTED) >= 2
    assert "a.a.a." in output and len(output.splitlines()) == 2
