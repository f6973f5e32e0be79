"""structlog set up once: JSON lines, or readable console output when attached to a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from receiver.redact import log_processor


def configure(*, json: bool | None = None, level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for the process, writing to `stream` (stdout by default).

    `json=None` picks JSON unless the stream is a terminal.
    """
    out = stream or sys.stdout
    use_json = not out.isatty() if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            log_processor,  # last before rendering: secrets never reach the output
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    """A logger with `bound` fields attached to every event."""
    return structlog.get_logger("receiver").bind(**bound)
