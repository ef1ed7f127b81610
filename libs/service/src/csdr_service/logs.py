"""Structured logs: one JSON object per line on stderr, configured once per process."""

import json
import logging
from collections.abc import Mapping


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a JSON line."""
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, quiet: Mapping[str, int] | None = None) -> None:
    """Send the root logger's records to stderr as JSON (calling it again only sets the levels);
    `quiet` raises the level of chatty upstream loggers, e.g. {"httpx": logging.WARNING}."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    for name, name_level in (quiet or {}).items():
        logging.getLogger(name).setLevel(name_level)
