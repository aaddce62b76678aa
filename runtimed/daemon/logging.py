"""structlog set up once: human-readable on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(*, debug: bool, stream=None) -> None:  # noqa: ANN001 - any text stream
    stream = stream or sys.stderr
    level = logging.DEBUG if debug else logging.INFO
    renderer: structlog.typing.Processor
    if stream.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    # grpc and httpx log through the standard library; keep them quiet unless debugging.
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=stream)
