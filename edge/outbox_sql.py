"""Every SQL statement of the outbox (SQLite), in one place.

``reading`` holds readings not yet acknowledged by the broker, in insertion
order (``seq``, AUTOINCREMENT so a number is never reused even after the table
empties: the publisher's cursor relies on it).  ``payload`` is the reading's
wire JSON object, ready to be joined into a batch.
"""

from __future__ import annotations

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS reading (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        device TEXT NOT NULL,
        taken_at_us INTEGER NOT NULL,
        payload BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS last_sequence (
        address TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
)

INSERT_READING = (
    "INSERT OR IGNORE INTO reading (id, device, taken_at_us, payload) VALUES (?, ?, ?, ?)"
)
COUNT_READINGS = "SELECT count(*) FROM reading"
READINGS_AFTER = "SELECT seq, payload FROM reading WHERE seq > ? ORDER BY seq LIMIT ?"
DELETE_READING = "DELETE FROM reading WHERE seq = ?"
DELETE_READING_BY_ID = "DELETE FROM reading WHERE id = ?"
OLDEST_SEQ = "SELECT min(seq) FROM reading"
ALL_READING_IDS = "SELECT id FROM reading ORDER BY seq"

GET_LAST_SEQUENCE = "SELECT seq FROM last_sequence WHERE address = ?"
SET_LAST_SEQUENCE = (
    "INSERT INTO last_sequence (address, seq) VALUES (?, ?) "
    "ON CONFLICT (address) DO UPDATE SET seq = excluded.seq"
)

GET_STATE = "SELECT value FROM state WHERE key = ?"
SET_STATE = (
    "INSERT INTO state (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
DELETE_STATE = "DELETE FROM state WHERE key = ?"
