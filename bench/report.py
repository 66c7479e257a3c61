"""Side-by-side tables of benchmark figures (one column per engine variant) and their JSON."""

from __future__ import annotations

import json
import math
import os
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.engines import EngineUnavailable, cpu_note

Figures = dict[str, Any]
"""One column's figures: metric key -> number, or {"error": message} when the run failed."""
Results = dict[str, Figures]
"""Column label ("sqlite", "postgresql", "postgresql x2") -> its figures, in column order."""


@dataclass(frozen=True)
class Metric:
    """A table row: figures[key] shown with `digits` decimals under `label` (unit included)."""

    key: str
    label: str
    digits: int = 0


def _cell(figures: Figures | None, metric: Metric) -> str:
    if figures is None:
        return "—"
    if "error" in figures:
        return "error"
    value = figures.get(metric.key)
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:,.{metric.digits}f}"


Row = tuple[str, Metric, Results]
"""A table row: a prefix (the benchmark's name, or ""), the metric, the figures it reads."""


def table(rows: list[Row], columns: list[str]) -> str:
    """A text table: one line per row, one right-aligned column per label in `columns`
    ("—" where a column has no such figure, "error" where its run failed)."""
    head = ["", *columns]
    body = [
        [f"{prefix + ': ' if prefix else ''}{metric.label}"]
        + [_cell(results.get(c), metric) for c in columns]
        for prefix, metric, results in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r)
        )
        for r in [head, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def errors(results: Results) -> list[str]:
    """'<column>: <message>' for every failed column."""
    return [f"{label}: {f['error']}" for label, f in results.items() if "error" in f]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def to_json(benchmark: str, results: Mapping[str, Any], settings: dict[str, Any]) -> str:
    """One line of JSON: {"benchmark", "cpus", "settings", "results"} (NaN as null)."""
    return json.dumps(
        {
            "benchmark": benchmark,
            "cpus": os.cpu_count(),
            "settings": settings,
            "results": _clean(results),
        },
        ensure_ascii=False,
    )


def print_summary(
    benchmark: str, metrics: list[Metric], results: Results, settings: dict[str, Any]
) -> int:
    """Print the side-by-side table, the CPU note, failures, and the JSON as the last line;
    return the exit status (1 when any column failed)."""
    print()
    print(f"== {benchmark}: side by side ==")
    print(table([("", m, results) for m in metrics], list(results)))
    print(cpu_note(any(" x" in label for label in results)))
    for line in errors(results):
        print(f"FAILED {line}")
    print(to_json(benchmark, results, settings))
    return 1 if errors(results) else 0


@contextmanager
def column(results: Results, label: str) -> Iterator[Callable[[Figures], None]]:
    """Run one column's measurement: prints a heading; what the block passes to the yielded
    function becomes results[label]; any Exception (not Ctrl-C) becomes {"error": message}
    after its traceback is printed, so the other columns still run."""
    print(f"\n=== {label} ===", flush=True)

    def store(figures: Figures) -> None:
        results[label] = figures

    try:
        yield store
    except EngineUnavailable as exc:
        results[label] = {"error": str(exc)}
        print(f"{label}: not measured ({exc})", flush=True)
    except Exception as exc:
        traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        results[label] = {"error": f"{type(exc).__name__}: {message}"[:300]}
        print(f"{label}: FAILED ({results[label]['error']})", flush=True)
