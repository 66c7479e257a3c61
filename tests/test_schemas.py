"""The scanner envelope's quick path never disagrees with marshmallow."""

from __future__ import annotations

import copy
import random
from typing import Any

from marshmallow import Schema, ValidationError

from webhook.schemas import RiskEnvelopeSchema, flatten_errors, quick_envelope

VALUES: dict[str, list[Any]] = {
    "key": ["k", "R-1", "", "x" * 256, "x" * 257, 5, None, "ü" * 10, ["a"], "k\ud800", "k\x00"],
    "name": ["n", "", "x" * 1000, "x" * 1001, None, 3.5, True, "Stored XSS \ud83d", "a\x00"],
    "severity": [
        "high",
        "HIGH",
        "Critical",
        "info",
        "severe",
        "",
        None,
        1,
        "\u0131nfo",
        "\u0130NFO",
    ],
    "status": ["open", "resolved", "Open", "closed", None, 1, ["open"]],
    "url": [
        "https://scanner.example/f/1",
        "http://h",
        "ftp://h/x",
        "https://user@h/x",
        "https://h:0/",
        "https://h:99999/",
        "https://h x/",
        "https:///nohost",
        None,
        5,
        "https://h/" + "a" * 2100,
        "https://h/\ud83d",
        "https://h/\x00",
    ],
    "definition": ["text", "", None, 5, "é" * 140_000, "a" * 10, "é\udfff", "\x00"],
    "evidence": ["e", None, [], "ü", "\ud83d\ude00", "\ude00\ud83d", "e\x00"],
    "proof": ["p", None, {}, "\udc00"],
    "remediation": ["r", None, False, "r\x00r"],
    "project": ["p", "", "x" * 256, "x" * 257, None, 1, "\ud83d", "p\x00"],
    "tags": [
        [],
        ["a"],
        ["a", "a"],
        [""],
        ["x" * 101],
        ["x"] * 100,
        ["x"] * 101,
        None,
        "a",
        [1],
        ["a", "\ud83d"],
        ["\x00"],
        # The reserved namespace of tracking tags, in the forms Azure DevOps would fold.
        ["adowh-1a2b3c4d-7"],
        ["ok", " ADOWH-x-1-0123456789abcdef"],
        ["\x00adowh-x"],
        ["\uff41dowh-x"],
        ["adowh", "my-adowh-x"],
    ],
    "assets": [
        [],
        [{"group": "g", "identifier": "i"}],
        [{"group": "g"}],
        [{"group": "g", "identifier": "i", "x": 1}],
        [{"group": "", "identifier": "i"}],
        [{"group": "g" * 1025, "identifier": "i"}],
        [{"group": 1, "identifier": "i"}],
        [{"group": "g", "identifier": "i"}, {"group": "g", "identifier": "\ud83d"}],
        [{"group": "g\x00", "identifier": "i"}],
        ["x"],
        None,
        {},
    ],
}
BASE = {"key": "R-1", "name": "SQL injection", "severity": "high"}


def random_risk(rng: random.Random, key: str) -> Any:
    if rng.random() < 0.03:
        return rng.choice([None, "risk", [], 7])
    item: dict[str, Any] = {**BASE, "key": key}
    for name in rng.sample(sorted(VALUES), rng.randint(0, len(VALUES))):
        item[name] = copy.deepcopy(VALUES[name][0])  # valid first values
    for name in rng.sample(sorted(VALUES), rng.randint(0, 2)):
        item[name] = copy.deepcopy(rng.choice(VALUES[name]))
    if rng.random() < 0.05:
        item.pop(rng.choice(["key", "name", "severity"]))
    if rng.random() < 0.05:
        item["unexpected"] = 1
    return item


def random_envelope(rng: random.Random) -> Any:
    shape = rng.random()
    if shape < 0.45:
        return {"risk": random_risk(rng, "R-1")}
    count = rng.choice([0, 1, 2, 3])
    keys = [f"R-{rng.randint(1, 4)}" for _ in range(count)]
    envelope: dict[str, Any] = {"risks": [random_risk(rng, k) for k in keys]}
    if shape > 0.95:
        envelope["risk"] = random_risk(rng, "R-9")
    elif shape > 0.92:
        envelope = {"risks": rng.choice([None, "x", {}])}
    elif shape > 0.9:
        envelope["other"] = True
    return envelope


def test_quick_path_agrees_with_marshmallow_on_random_bodies() -> None:
    rng = random.Random(20261122)
    schema = RiskEnvelopeSchema()
    accepted = quick = rejected = 0
    for _ in range(4000):
        body = random_envelope(rng)
        try:
            expected = Schema.load(schema, copy.deepcopy(body))  # marshmallow alone
        except ValidationError:
            assert quick_envelope(copy.deepcopy(body)) is None, body
            rejected += 1
            continue
        accepted += 1
        got = quick_envelope(copy.deepcopy(body))
        if got is not None:
            quick += 1
            assert got == expected, body
        assert schema.load(copy.deepcopy(body)) == expected
    # Both kinds were exercised, and most valid bodies took the quick path.
    assert rejected > 1000 and accepted > 1000
    assert quick > 0.6 * accepted, (quick, accepted)


def test_typical_scanner_bodies_take_the_quick_path() -> None:
    one = {
        "key": "R-1",
        "name": "SQL injection",
        "severity": "HIGH",
        "url": "https://scanner.example/f/1",
        "definition": "User input reaches SQL.",
        "assets": [{"group": "repo", "identifier": "shop/api"}],
        "project": "shop",
        "tags": ["sast", "sast"],
    }
    single = quick_envelope({"risk": one})
    assert single is not None and single["risk"]["severity"] == "high"
    assert single["risk"]["status"] == "open"
    batch = quick_envelope({"risks": [{**one, "key": f"R-{i}"} for i in range(1000)]})
    assert batch is not None and len(batch["risks"]) == 1000
    # Duplicate keys are for marshmallow to name in its error.
    assert quick_envelope({"risks": [one, one]}) is None


def test_unstorable_text_is_refused_by_both_paths_naming_the_field() -> None:
    """A lone surrogate or NUL anywhere: quick path declines, marshmallow names the field."""
    schema = RiskEnvelopeSchema()
    base = {"key": "R-1", "name": "n", "severity": "high"}
    cases = {
        "risk.name": {"risk": {**base, "name": "Stored XSS \ud83d"}},
        "risk.key": {"risk": {**base, "key": "\udc00"}},
        "risk.evidence": {"risk": {**base, "evidence": "é" * 1000 + "\x00"}},
        "risks.1.assets.3.identifier": {
            "risks": [
                base,
                {
                    **base,
                    "key": "R-2",
                    "assets": [{"group": "g", "identifier": str(i)} for i in range(3)]
                    + [{"group": "g", "identifier": "\ud83d"}],
                },
            ]
        },
        "risk.tags.0": {"risk": {**base, "tags": ["\ud83d"]}},
    }
    for path, body in cases.items():
        assert quick_envelope(copy.deepcopy(body)) is None, path
        try:
            schema.load(body)
        except ValidationError as exc:
            assert list(flatten_errors(exc.messages)) == [path]
        else:
            raise AssertionError(f"{path} was accepted")
    # A whole astral character is storable text, and takes the quick path.
    assert quick_envelope({"risk": {**base, "name": "XSS \U0001f600", "tags": ["é"]}})
