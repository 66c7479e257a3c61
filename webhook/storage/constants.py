"""Storage constants shared by the interfaces, their implementations, and their callers."""

from __future__ import annotations

# A running job's holder renews its lease every few seconds (Worker.heartbeat_every). Another
# worker takes the job over once it has seen the lease unchanged for this long by its own
# monotonic clock, so a step of the wall clock never makes a live lease look expired.
JOB_LEASE_SECONDS = 40.0
"""Default lease of a claimed job (seconds); see JobRepository.claim_jobs."""

ASSETS_IN_LIST = 20
"""How many assets a risk list shows per risk (RiskSummary.assets); `assets_total` counts all."""
