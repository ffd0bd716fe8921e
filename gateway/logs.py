"""The server's log: one JSON object per line, hypercorn's own lines included.

The access log (observer.py) writes its JSON lines to standard output; everything else — start,
warnings, errors, hypercorn's "Running on …" — goes through `logging` to standard error, in the
same shape, so `opencode-gateway serve 2>&1 | jq …` reads every line. `LOG_CONFIG` is a plain
dict because hypercorn hands it to each worker process it spawns (`logconfig_dict`).
"""
from __future__ import annotations

import json
import logging
import logging.config
import time


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "pid", "message"}`, plus `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name,
                "pid": record.process, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                            "formatter": "json"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    # hypercorn gives its error logger a plain-text handler of its own; this replaces it.
    "loggers": {"hypercorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False}},
}


def setup() -> None:
    logging.config.dictConfig(LOG_CONFIG)
