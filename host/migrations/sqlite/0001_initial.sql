-- Tandem's state: the user map, sync lists, links between records, cursors, run history.

CREATE TABLE users (
    login            TEXT PRIMARY KEY,
    mailbox          TEXT NOT NULL,
    enabled          INTEGER NOT NULL DEFAULT 1,
    domains          TEXT NOT NULL,      -- JSON: {"contacts": "full", ...}
    sync_group       TEXT NOT NULL DEFAULT 'default',
    disabled_reason  TEXT,               -- set when Tandem disabled the user itself
    created_at       TEXT NOT NULL
);

-- When each user runs next, and which node holds it: a user is synced by at most one node
-- at a time (lease with expiry). Times are Unix milliseconds from the nodes' clocks.
CREATE TABLE schedule (
    login                 TEXT PRIMARY KEY REFERENCES users(login) ON DELETE CASCADE,
    next_run_ms           BIGINT NOT NULL DEFAULT 0,
    lease_node            TEXT,
    lease_expires_ms      BIGINT NOT NULL DEFAULT 0,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    last_error            TEXT
);

-- "Add To Sync List": the Siebel records a user syncs.
CREATE TABLE sync_list (
    login       TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
    siebel_id   TEXT NOT NULL,
    added_at    TEXT NOT NULL,
    PRIMARY KEY (login, siebel_id)
);

-- One row per linked pair: what both sides looked like when they last agreed.
CREATE TABLE links (
    login           TEXT NOT NULL,
    domain          TEXT NOT NULL,
    siebel_id       TEXT NOT NULL,
    exchange_id     TEXT NOT NULL,
    change_key      TEXT NOT NULL,
    sync_id         TEXT NOT NULL UNIQUE,
    siebel_updated  TEXT,
    siebel_hash     TEXT NOT NULL,       -- hash of to_exchange(siebel record)
    exchange_hash   TEXT NOT NULL,       -- hash of to_siebel(exchange item)
    base            TEXT NOT NULL,       -- JSON: the agreed content, Exchange shape
    synced_at       TEXT NOT NULL,
    PRIMARY KEY (login, domain, siebel_id)
);
CREATE UNIQUE INDEX links_by_exchange_id ON links (login, domain, exchange_id);

-- Exchange SyncState per user and folder, saved only after its batch is applied.
CREATE TABLE folder_cursors (
    login       TEXT NOT NULL,
    folder      TEXT NOT NULL,
    sync_state  TEXT NOT NULL,
    PRIMARY KEY (login, folder)
);

-- Writes about to be made, so a crash between the remote write and the link is resolved
-- by looking the record up by its sync id instead of writing it again.
CREATE TABLE intents (
    sync_id     TEXT PRIMARY KEY,
    login       TEXT NOT NULL,
    domain      TEXT NOT NULL,
    operation   TEXT NOT NULL,
    siebel_id   TEXT,
    exchange_id TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    node         TEXT NOT NULL DEFAULT '',
    login        TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    status       TEXT NOT NULL,
    report       TEXT NOT NULL           -- JSON run report
);
CREATE INDEX runs_by_login ON runs (login, id);

CREATE TABLE conflicts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    login        TEXT NOT NULL,
    domain       TEXT NOT NULL,
    siebel_id    TEXT NOT NULL,
    exchange_id  TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    detail       TEXT NOT NULL,
    at           TEXT NOT NULL
);

-- Records that failed (mapping, filtering, writing), kept aside with the reason and retried
-- with backoff; a quarantined record never causes a delete.
CREATE TABLE quarantine (
    login          TEXT NOT NULL,
    domain         TEXT NOT NULL,
    record_key     TEXT NOT NULL,        -- "siebel:ID" or "exchange:ITEMID"
    reason         TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    first_seen     TEXT NOT NULL,
    next_retry_ms  BIGINT NOT NULL,
    PRIMARY KEY (login, domain, record_key)
);
