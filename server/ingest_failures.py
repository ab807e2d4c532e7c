"""Is a failed write a database outage, or the database refusing this batch?

The ingest must wait out an outage (hold every message, retry with back-off:
nothing is lost) but must not wait out a refusal (the same batch fails
forever and every hub's readings queue behind it).  psycopg's exception
classes do not tell them apart: it maps SQLSTATE class 53 "insufficient
resources" (53200 ``out of shared memory``, what a batch touching thousands of
TimescaleDB chunks gets), class 54 and class 57 alike to
``OperationalError``, the class a lost connection also raises.  So the
decision is made on the SQLSTATE, and on whether the connection survived.

SQLSTATE codes: https://www.postgresql.org/docs/15/errcodes-appendix.html
"""

from __future__ import annotations

from enum import StrEnum

import psycopg


class Failure(StrEnum):
    #: The database is not there (connection lost, shutting down, not accepting
    #: connections): hold every message and retry the same work with back-off.
    OUTAGE = "outage"
    #: The database answered and said no to this work (bad data, integrity,
    #: resources, limits): split the batch and isolate the culprit message.
    REFUSAL = "refusal"
    #: Neither of the above (deadlock, serialization failure, lock or statement
    #: timeout, a missing privilege or table, an internal error).  Split too,
    #: but a message is held against its tries only once the database has
    #: stored other work since it last failed: a failure that every message
    #: gets is the database's problem, not the message's.
    UNSURE = "unsure"


#: Classes that are about the work sent, not about the server being there:
#: 22 data exception, 23 integrity constraint violation, 53 insufficient
#: resources (53200 out of shared memory, 53400 configuration limit exceeded),
#: 54 program limit exceeded (too many columns, statement too complex).
REFUSAL_CLASSES = frozenset({"22", "23", "53", "54"})
#: Class 08 connection exception; 57P01 admin shutdown, 57P02 crash shutdown,
#: 57P03 cannot connect now (starting up / in recovery), 57P04 database
#: dropped, 57P05 idle session timeout.  And 53300 too_many_connections, the
#: one class 53 code that is raised on connecting: it says nothing of a message.
OUTAGE_CLASSES = frozenset({"08"})
OUTAGE_PREFIXES = ("57P",)
OUTAGE_CODES = frozenset({"53300"})


def classify(sqlstate: str | None, *, connection_lost: bool) -> Failure:
    """The kind of a failed write, from its SQLSTATE and the connection's state.

    ``sqlstate`` is None when the error did not come from the server: a lost
    connection (an outage), or psycopg refusing to send a value (a NUL in a
    text parameter: a refusal, with the connection intact).
    """
    if connection_lost:
        return Failure.OUTAGE
    if sqlstate is None:
        return Failure.REFUSAL
    if (sqlstate in OUTAGE_CODES or sqlstate[:2] in OUTAGE_CLASSES
            or sqlstate.startswith(OUTAGE_PREFIXES)):
        return Failure.OUTAGE
    if sqlstate[:2] in REFUSAL_CLASSES:
        return Failure.REFUSAL
    return Failure.UNSURE


def classify_error(err: BaseException, conn: psycopg.Connection[object] | None) -> Failure:
    """:func:`classify` for an exception raised while ``conn`` was writing."""
    if not isinstance(err, psycopg.Error):
        return Failure.UNSURE
    lost = conn is None or conn.closed or conn.broken or isinstance(err, psycopg.InterfaceError)
    return classify(err.sqlstate, connection_lost=lost)


def describe(err: BaseException) -> str:
    """``SQLSTATE: first line of the message``, short enough for a quarantine reason."""
    state = getattr(err, "sqlstate", None) or "no SQLSTATE"
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"{state}: {first[:300]}"
