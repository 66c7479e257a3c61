-- ado-webhook schema. Every statement is idempotent (IF NOT EXISTS): init-db and start-up apply
-- it, then the numbered migrations in webhook/migrations.py bring older databases up to date.
-- Times: *_at TEXT columns are ISO-8601 UTC for people; *_ts REAL columns are unix seconds for
-- scheduling arithmetic.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS sources (
    id                     INTEGER PRIMARY KEY,
    name                   TEXT NOT NULL UNIQUE,
    callback_url           TEXT,
    secret_enc             TEXT NOT NULL,          -- Fernet
    previous_secret_enc    TEXT,                   -- Fernet; valid until previous_expires_ts
    previous_expires_ts    REAL,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);

-- Scanner deliveries already answered, for webhook-id idempotency.
CREATE TABLE IF NOT EXISTS deliveries (
    source_id     INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    webhook_id    TEXT NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT NOT NULL,
    received_ts   REAL NOT NULL,
    PRIMARY KEY (source_id, webhook_id)
);
CREATE INDEX IF NOT EXISTS deliveries_received ON deliveries(received_ts);

CREATE TABLE IF NOT EXISTS risks (
    id               INTEGER PRIMARY KEY,
    source           TEXT NOT NULL,
    key              TEXT NOT NULL,
    name             TEXT NOT NULL,
    severity         TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'open',     -- open | resolved | removed (combined)
    scanner_status   TEXT NOT NULL DEFAULT 'open',     -- last status the scanner reported
    url              TEXT,
    definition       TEXT,
    evidence         TEXT,
    proof            TEXT,
    remediation      TEXT,
    assets           TEXT NOT NULL DEFAULT '[]',
    project          TEXT,
    tags             TEXT NOT NULL DEFAULT '[]',
    content_hash     TEXT NOT NULL,
    item_hash        TEXT,           -- hash of what its work item shows (NULL: stored before)
    resolution_state TEXT,
    resolution_by    TEXT,
    resolution_at    TEXT,
    resolution_reason TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (source, key)
);
CREATE INDEX IF NOT EXISTS risks_status ON risks(status);
CREATE INDEX IF NOT EXISTS risks_severity ON risks(severity);

CREATE TABLE IF NOT EXISTS risk_history (
    id       INTEGER PRIMARY KEY,
    risk_id  INTEGER NOT NULL REFERENCES risks(id) ON DELETE CASCADE,
    at       TEXT NOT NULL,
    event    TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS risk_history_risk ON risk_history(risk_id, id);

CREATE TABLE IF NOT EXISTS connections (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    organization_url  TEXT NOT NULL,
    auth_type         TEXT NOT NULL,                  -- pat | service_principal
    auth_enc          TEXT NOT NULL,                  -- Fernet(JSON credentials)
    tenant_id         TEXT,
    client_id         TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS templates (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    connection_id       INTEGER NOT NULL REFERENCES connections(id) ON DELETE RESTRICT,
    project             TEXT NOT NULL,
    work_item_type      TEXT NOT NULL,
    auto_create         INTEGER NOT NULL DEFAULT 0,
    severity_threshold  TEXT NOT NULL,
    sources             TEXT,                         -- JSON list or NULL (any source)
    title_format        TEXT NOT NULL DEFAULT '{name}',
    tags                TEXT NOT NULL DEFAULT '[]',
    area_path           TEXT,
    iteration_path      TEXT,
    fields              TEXT NOT NULL DEFAULT '{}',
    close_on_resolve    INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS work_items (
    risk_id         INTEGER PRIMARY KEY REFERENCES risks(id) ON DELETE CASCADE,
    connection_id   INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    template_id     INTEGER REFERENCES templates(id) ON DELETE SET NULL,
    ado_id          INTEGER NOT NULL,
    project         TEXT NOT NULL,
    type            TEXT NOT NULL,
    url             TEXT,
    state           TEXT,
    state_category  TEXT,
    rev             INTEGER NOT NULL DEFAULT 0,
    deleted         INTEGER NOT NULL DEFAULT 0,
    tag             TEXT NOT NULL,
    changed_at      TEXT,
    title           TEXT,             -- the title the service last wrote (NULL: unknown)
    body_hash       TEXT,             -- SHA-256 of the body the service last wrote
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (connection_id, ado_id)
);

-- Outside work recorded in the same transaction as the change that implies it.
-- Jobs sharing a lane run strictly in id order (e.g. create before comment, callbacks in order).
CREATE TABLE IF NOT EXISTS jobs (
    id                INTEGER PRIMARY KEY,
    kind              TEXT NOT NULL,
    risk_id           INTEGER REFERENCES risks(id) ON DELETE CASCADE,
    lane              TEXT NOT NULL,
    payload           TEXT NOT NULL DEFAULT '{}',
    state             TEXT NOT NULL DEFAULT 'pending',   -- pending | running | failed | done
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    next_attempt_ts   REAL NOT NULL,
    lease_owner       TEXT,
    lease_expires_ts  REAL,                              -- informational: expiry is observed
    claim_token       INTEGER NOT NULL DEFAULT 0,        -- fencing token, +1 at each claim
    lease_renewals    INTEGER NOT NULL DEFAULT 0,        -- +1 at each renewal by the holder
    created_ts        REAL NOT NULL,
    updated_ts        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(state, next_attempt_ts);
-- Only jobs that hold their lane: claiming checks "no earlier pending, running or failed job in
-- this lane"; done jobs must not be walked.
CREATE INDEX IF NOT EXISTS jobs_lane_held ON jobs(lane, id)
    WHERE state IN ('pending','running','failed');
CREATE INDEX IF NOT EXISTS jobs_risk ON jobs(risk_id);

-- Work item type facts (states with categories, fields) fetched from Azure DevOps.
CREATE TABLE IF NOT EXISTS type_cache (
    connection_id  INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    project        TEXT NOT NULL,
    type           TEXT NOT NULL,
    info           TEXT NOT NULL,
    fetched_ts     REAL NOT NULL,
    PRIMARY KEY (connection_id, project, type)
);

CREATE TABLE IF NOT EXISTS hooks (
    id               INTEGER PRIMARY KEY,
    connection_id    INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    project          TEXT NOT NULL,
    project_id       TEXT,
    event_type       TEXT NOT NULL,
    subscription_id  TEXT,
    status           TEXT NOT NULL DEFAULT 'unknown',
    username         TEXT NOT NULL UNIQUE,
    password_hash    TEXT NOT NULL,
    heal_count       INTEGER NOT NULL DEFAULT 0,
    last_checked_at  TEXT,
    last_healed_at   TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (connection_id, project, event_type)
);

-- Azure DevOps deliveries already recorded (dedup on the event id).
CREATE TABLE IF NOT EXISTS hook_events (
    event_id      TEXT PRIMARY KEY,
    hook_id       INTEGER REFERENCES hooks(id) ON DELETE SET NULL,
    event_type    TEXT NOT NULL,
    work_item_id  INTEGER,
    rev           INTEGER,
    received_ts   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS hook_events_received ON hook_events(received_ts);

-- Organization-wide pauses after 429 / Retry-After, shared by every worker.
CREATE TABLE IF NOT EXISTS org_pauses (
    organization_url  TEXT PRIMARY KEY,
    paused_until_ts   REAL NOT NULL
);

-- Periodic tasks (hook check, reconciliation, cleanup) with a lease so one worker runs each.
CREATE TABLE IF NOT EXISTS periodic_runs (
    name              TEXT PRIMARY KEY,
    last_started_ts   REAL,
    last_finished_ts  REAL,
    last_ok           INTEGER,
    last_result       TEXT,
    lease_owner       TEXT,
    lease_expires_ts  REAL
);

CREATE TABLE IF NOT EXISTS workers (
    id            TEXT PRIMARY KEY,
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL,
    heartbeat_ts  REAL NOT NULL
);

-- Admin web UI (/ui/): server-side sign-in sessions. The cookie carries a random id; only its
-- SHA-256 is stored, and signing out deletes the row, so a copied cookie stops working.
CREATE TABLE IF NOT EXISTS ui_sessions (
    id_hash       TEXT PRIMARY KEY,
    created_ts    REAL NOT NULL,
    last_seen_ts  REAL NOT NULL,
    expires_ts    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ui_sessions_expires ON ui_sessions(expires_ts);

-- Failed UI sign-ins per client address, shared by every web worker (throttling).
CREATE TABLE IF NOT EXISTS ui_sign_in_failures (
    client           TEXT PRIMARY KEY,
    failures         INTEGER NOT NULL,
    last_failure_ts  REAL NOT NULL,
    locked_until_ts  REAL NOT NULL
);
