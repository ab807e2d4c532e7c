"""Private PostgreSQL and Mosquitto instances started from the system's binaries.

Used by ``homeward demo`` (in a state folder) and by the test suite (in
temporary folders, on free ports), so that both run real servers with the
configuration they need: auth, ACLs, restarts.
"""

from __future__ import annotations

from stack.services.common import MissingBinaryError, free_port
from stack.services.mosquitto import MosquittoServer
from stack.services.postgres import PostgresServer

__all__ = ["MissingBinaryError", "MosquittoServer", "PostgresServer", "free_port"]
