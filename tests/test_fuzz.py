"""Property-based fuzzing of the whole HTTP API against its own /openapi.json (schemathesis).

Every operation of the served OpenAPI document (except the Azure DevOps service-hook receiver,
`POST /hooks/ado`, which needs the stand-in to mean anything) gets positive and negative cases
generated from its schema and sent in-process through WSGI. Each answer must:

* not be a server error — except 502/503 from the routes that call Azure DevOps (unreachable
  here: every outgoing HTTP request fails before it leaves the process) and the documented 503
  of /readyz (no worker heartbeat in a test);
* have a documented status code (or be covered by `default`), a documented content type, and a
  body valid against the documented schema.

Admin routes get the admin bearer token. The scanner webhook is pinned to a source created
beforehand and signed (Standard Webhooks) over the exact bytes sent; one case in ten goes out
with the generated (unsigned) headers instead, to fuzz the signature parsing.

The default run generates at least MIN_CI_CASES cases; `pytest -m slow` runs FUZZ_CASES
(default 10,000). Generation is derandomized, so a CI failure reproduces locally.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode, checks
from schemathesis.errors import FailureGroup

from tests.conftest import ADMIN_TOKEN, Scanner, make_settings, risk
from webhook import create_app
from webhook.domain.signatures import sign

MIN_CI_CASES = 2000
SLOW_CASES = int(os.environ.get("FUZZ_CASES", "10000"))
WEBHOOK = "POST /webhooks/risks/{source}"
ROTATE = "POST /admin/sources/{source_id}/rotate-secret"
EXCLUDED = {"POST /hooks/ado"}
# Routes that call Azure DevOps: 502 (unreachable) and 503 are legitimate answers there.
ADO_OPERATIONS = {
    "POST /admin/connections",
    "PATCH /admin/connections/{connection_id}",
    "POST /admin/connections/{connection_id}/test",
    "GET /admin/connections/{connection_id}/projects",
    "GET /admin/connections/{connection_id}/projects/{project}/work-item-types",
    "POST /admin/templates",
    "PATCH /admin/templates/{template_id}",
    "POST /admin/hooks",
    "GET /admin/hooks",
    "DELETE /admin/hooks/{hook_id}",
}
# The scanner webhook gets this many times the cases of any other operation.
WEBHOOK_WEIGHT = 8
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SOURCE = "fuzz-scanner"
ORG_URL = "http://127.0.0.1:9/fuzz-org"  # allow-listed below; nothing is ever sent anyway


class _Tracebacks(logging.Handler):
    """Keeps the tracebacks the app logs for unhandled errors, to explain a 500."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.last = logging.Formatter().formatException(record.exc_info)


class FuzzTarget:
    """The app under test, seeded so that ids and names in generated requests can hit rows."""

    def __init__(self, tmp_path: Path) -> None:
        self.app: Flask = create_app(
            make_settings(
                tmp_path,
                WEBHOOK_ALLOWED_ORG_HOSTS="127.0.0.1:9",
                WEBHOOK_PUBLIC_URL="https://adowh.example.test",
            )
        )
        self.store = self.app.extensions["adowh"].store
        self.tracebacks = _Tracebacks()
        self.app.logger.addHandler(self.tracebacks)
        self.scanner = Scanner(self.app.test_client(), ADMIN, SOURCE)
        self.secret = self.scanner.secret
        self.statuses: dict[str, Counter[int]] = {}
        self._seed()
        self.schema = schemathesis.openapi.from_wsgi("/openapi.json", self.app)
        # Credentials are added below: negative cases should spend their budget on the inputs
        # (query, path, body), not on dropping the Authorization header.
        self.schema.config.generation.update(with_security_parameters=False)

    def close(self) -> None:
        self.app.logger.removeHandler(self.tracebacks)
        self.store.db.close()

    def _seed(self) -> None:
        full = risk(
            "SEED-1",
            url="https://scanner.example.test/findings/1",
            definition="**Definition**",
            evidence="<script>alert(1)</script>",
            proof="GET /?q=1' OR '1'='1",
            remediation="Use bound parameters.",
            assets=[{"group": "host", "identifier": "db.internal"}],
            project="Fuzz",
            tags=["sqli", "seed"],
        )
        batch = [full, risk("SEED-2", status="resolved"), risk("SEED-3", severity="LOW")]
        assert self.scanner.send({"risks": batch}).status_code == 202
        connection = self.store.create_connection(
            "fuzz-connection", ORG_URL, {"type": "pat", "token": "fuzz-pat"}
        )
        template = self.store.create_template(
            {
                "name": "fuzz-template",
                "connection_id": connection["id"],
                "project": "Fuzz",
                "work_item_type": "Bug",
                "auto_create": False,
                "severity_threshold": "low",
                "sources": None,
                "title_format": "{name}",
                "tags": [],
                "area_path": None,
                "iteration_path": None,
                "fields": {},
                "close_on_resolve": False,
            }
        )
        self.store.request_work_item(1, template["id"])
        while (job := self.store.claim_job("fuzz-seed")) is not None:
            self.store.fail_job(job, "seeded failure")
        self.store.save_hook(
            connection_id=connection["id"],
            project="Fuzz",
            project_id="00000000-0000-0000-0000-000000000001",
            event_type="workitem.updated",
            subscription_id="00000000-0000-0000-0000-0000000000aa",
            status="enabled",
            username="fuzz-hook",
            password_hash="not-a-real-hash",
            healed=False,
        )

    # ---- checks --------------------------------------------------------------------------

    def no_server_error(self, ctx: Any, response: Any, case: Any) -> None:
        """5xx fails, except 502/503 where Azure DevOps is called and /readyz's 503."""
        status = response.status_code
        label = case.operation.label
        allowed = {502, 503} if label in ADO_OPERATIONS else set()
        if label == "GET /readyz":
            allowed.add(503)
        if status >= 500 and status not in allowed:
            raise AssertionError(
                f"{status} from {label}\n\nserver traceback:\n{self.tracebacks.last}"
            )

    @staticmethod
    def no_admin_401(ctx: Any, response: Any, case: Any) -> None:
        """Every admin case carries the token: a 401 would make the fuzzing hollow."""
        if case.operation.path.startswith("/admin/") and response.status_code == 401:
            raise AssertionError(f"401 from {case.operation.label} despite the admin token")

    @property
    def checks(self) -> list[Any]:
        return [
            self.no_server_error,
            self.no_admin_401,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ]

    # ---- sending -------------------------------------------------------------------------

    def send(self, case: Any, *, unsigned: bool, known_id: int | None) -> None:
        """Send one case through WSGI and validate the answer against the document."""
        label = case.operation.label
        self.tracebacks.last = None
        if known_id is not None:  # aim integer ids at seeded rows, so 200s get validated too
            case.path_parameters = {
                name: known_id if isinstance(value, int) and not isinstance(value, bool) else value
                for name, value in (case.path_parameters or {}).items()
            }
        if label == WEBHOOK:
            case.path_parameters = {**(case.path_parameters or {}), "source": SOURCE}
            raw = _wire_body(case)
            if not unsigned:  # on the case itself: a negative case must not drop them again
                case.headers = {**(case.headers or {}), **_signed(self.secret, raw)}
            response = case.call_and_validate(data=raw, checks=self.checks)
        else:
            response = case.call_and_validate(headers=ADMIN, checks=self.checks)
        self.statuses.setdefault(label, Counter())[response.status_code] += 1
        if label == ROTATE and response.status_code == 200:
            body = response.json()
            if body.get("name") == SOURCE:  # keep signing with the current secret
                self.secret = body["secret"]


def _wire_body(case: Any) -> bytes:
    """The exact request body schemathesis would send for this case."""
    kwargs = case.as_transport_kwargs()
    if kwargs.get("data") is not None:
        data = kwargs["data"]
        return data if isinstance(data, bytes) else str(data).encode()
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    return b""


def _signed(secret: str, raw: bytes) -> dict[str, str]:
    """Standard Webhooks headers over exactly `raw`."""
    msg_id = f"msg_fuzz_{time.time_ns()}"
    ts = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, raw),
    }


def _no_network(self: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any) -> Any:
    raise requests.ConnectionError(f"fuzz tests send nothing over the network ({request.url})")


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FuzzTarget]:
    monkeypatch.setattr(HTTPAdapter, "send", _no_network)
    fuzz_target = FuzzTarget(tmp_path)
    yield fuzz_target
    fuzz_target.close()


def _takes_input(operation: Any) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


def _order(operation: Any) -> tuple[int, str]:
    """The webhook first (it seeds risks), deletions last (they remove seeded rows)."""
    if operation.label == WEBHOOK:
        return (0, operation.label)
    return (2 if operation.method.upper() == "DELETE" else 1, operation.label)


HYPOTHESIS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
    print_blob=False,
)


def fuzz_operation(
    target: FuzzTarget, operation: Any, mode: GenerationMode, max_examples: int
) -> tuple[int, str | None]:
    """Run one operation in one generation mode; return (cases sent, failure report)."""
    count = 0

    @settings(HYPOTHESIS, max_examples=max_examples)
    @given(
        case=operation.as_strategy(generation_mode=mode),
        tamper=st.integers(0, 9),
        known_id=st.none() | st.integers(1, 3),
    )
    def run(case: Any, tamper: int, known_id: int | None) -> None:
        nonlocal count
        count += 1
        target.send(case, unsigned=tamper == 9, known_id=known_id)

    try:
        run()
    except (Exception, FailureGroup) as exc:
        return count, f"{operation.label} [{mode.value}]: {exc}"
    return count, None


def fuzz(target: FuzzTarget, budget: int) -> int:
    """Fuzz every operation (positive and negative) with about `budget` cases in total."""
    operations = sorted(
        (
            op
            for op in (result.ok() for result in target.schema.get_all_operations())
            if op.label not in EXCLUDED
        ),
        key=_order,
    )
    runs = [
        (op, mode)
        for op in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode is GenerationMode.POSITIVE or _takes_input(op)
    ]
    weights = sum(WEBHOOK_WEIGHT if op.label == WEBHOOK else 1 for op, _ in runs)
    per_weight = math.ceil(budget * 1.1 / weights)  # margin for tiny input spaces
    total = 0
    failures: list[str] = []
    started = time.monotonic()
    for op, mode in runs:
        weight = WEBHOOK_WEIGHT if op.label == WEBHOOK else 1
        count, failure = fuzz_operation(target, op, mode, per_weight * weight)
        total += count
        if failure:
            failures.append(failure)
    summary = {label: dict(sorted(c.items())) for label, c in sorted(target.statuses.items())}
    print(
        f"fuzzed {total} cases over {len(runs)} runs in {time.monotonic() - started:.1f}s;"
        f" statuses: {summary}"
    )
    assert not failures, "\n\n".join(failures)
    webhook = target.statuses.get(WEBHOOK, Counter())
    assert webhook[202] >= 10, f"signed scanner requests were hardly ever accepted: {webhook}"
    assert webhook[401] >= 1, f"unsigned scanner requests were never sent: {webhook}"
    return total


def test_fuzz_api(target: FuzzTarget) -> None:
    assert fuzz(target, MIN_CI_CASES) >= MIN_CI_CASES


@pytest.mark.slow
def test_fuzz_api_long(target: FuzzTarget) -> None:
    assert fuzz(target, SLOW_CASES) >= SLOW_CASES
