"""Logging of the API process: uvicorn's format, with every key-shaped token redacted.

Keys travel only in the ``Authorization`` header, which neither uvicorn nor the app logs. The filter
is defence in depth for keys pasted where they do not belong (a URL, an error text): anything shaped
like a key (``oilk_…``) or a bearer credential becomes ``***`` in every record, access log included.
"""

from __future__ import annotations

import copy
import logging
import re

from uvicorn.config import LOGGING_CONFIG

from .keys import KEY_PATTERN

BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


def redact(text: str) -> str:
    return BEARER.sub(r"\1***", KEY_PATTERN.sub("***", text))


class RedactKeys(logging.Filter):
    """Redacts keys in the message and in string arguments (uvicorn's access formatter needs its
    argument tuple intact, so arguments are redacted in place rather than merged into the message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def log_config(level: str = "INFO") -> dict:
    """uvicorn's logging config plus the app logger, every handler behind :class:`RedactKeys`."""
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["filters"] = {"redact": {"()": "oil_analysis.api.logs.RedactKeys"}}
    for handler in cfg["handlers"].values():
        handler["filters"] = ["redact"]
    cfg["loggers"]["oil_analysis"] = {"handlers": ["default"], "level": level, "propagate": False}
    return cfg
