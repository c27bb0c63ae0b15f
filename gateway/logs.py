"""Structured logs: one JSON object per line on stderr (time, level, logger, message, extras)."""

import json
import logging
import sys

from .clock import wire_time


class JSONFormatter(logging.Formatter):
    _SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}

    def __init__(self, worker=None):
        super().__init__()
        self.worker = worker

    def format(self, record):
        out = {
            "time": wire_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            out["worker"] = self.worker
        for k, v in record.__dict__.items():
            if k not in self._SKIP:
                out[k] = v
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(level="info", worker=None, stream=None):
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter(worker))
    root = logging.getLogger("gridlink")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
