"""The server's structured logs: JSON lines on stderr, one ``firstspike.server`` logger.

Every part of the server logs through :func:`event` (message + fields). :func:`setup_logging` installs the
formatter for all ``firstspike`` loggers; the serial device side uses it too.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

__all__ = ["JsonFormatter", "event", "log", "setup_logging"]

#: The logger of every server part (its name is the ``logger`` field of each line).
log = logging.getLogger("firstspike.server")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "info") -> None:
    """Structured (JSON lines) logs of the ``firstspike`` loggers to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("firstspike")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def event(level: int, msg: str, fields: dict[str, Any], exc_info: BaseException | None = None) -> None:
    """Log ``msg`` with ``fields`` (they become keys of the JSON line) on the server logger."""
    log.log(level, msg, exc_info=exc_info, extra={"fields": fields})
