"""Logging set-up: plain lines for people, or JSON lines (``LOG_FORMAT=json``) for shippers.

The access log passes its fields as ``extra={"fields": {...}}``; the JSON format puts them
in the object, the plain format has them in the message already.

Rules kept here, so that no request can forge a log line:
- In the plain format every character of a message that is not printable (line breaks,
  other control characters, bidirectional overrides, zero-width marks) is written as a
  Python escape (``\\n``, ``\\x1b``, ``\\u202e``), whoever logged it and whatever the
  message holds (a decoded path, a model name, a header). Only a record's first line
  starts at the margin: what follows it (a traceback) is indented.
- The JSON format escapes by itself: ``json.dumps`` writes control characters and all
  non-ASCII as ``\\uXXXX``, so each record is one line.
"""

from __future__ import annotations

import json
import logging
import time


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped as Python would (``ascii``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class PlainFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return "\n    ".join(super().format(record).splitlines())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
