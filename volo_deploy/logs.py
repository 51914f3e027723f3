"""The package logger ``volo_deploy``: library modules log to ``logging.getLogger(__name__)``,
the CLIs call :func:`configure` once; records are written with ``tqdm.write`` so progress bars
stay intact. :func:`capture` also collects the INFO+ messages of a block (a bench row's log).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER_NAME = "volo_deploy"
_PREFIX = {logging.DEBUG: "debug: ", logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}


class TqdmHandler(logging.Handler):
    """Writes each record through ``tqdm.write`` to stderr (read at emit time), above any bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a broken stream must not end the run: logging's own convention
            self.handleError(record)


class _Formatter(logging.Formatter):
    """INFO as the bare message; other levels prefixed (``warning: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        return _PREFIX.get(record.levelno, "") + super().format(record)


def level_for(verbose: bool = False, quiet: bool = False) -> int:
    """INFO by default, DEBUG with ``-v``, WARNING with ``-q``."""
    return logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO


def configure(level: int = logging.INFO) -> logging.Handler:
    """Show the package's records at ``level`` and above on stderr through tqdm (replaces an earlier call's
    handler). The logger itself passes INFO on, so :func:`capture` sees the same lines under ``-q``."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in [h for h in logger.handlers if isinstance(h, TqdmHandler)]:
        logger.removeHandler(h)
    handler = TqdmHandler(level)
    handler.setFormatter(_Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(min(level, logging.INFO))
    return handler


class _ListHandler(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@contextmanager
def capture(into: list[str]) -> Iterator[None]:
    """Append the message of every INFO+ package record logged inside the block to ``into``
    (the records still reach the console as configured)."""
    logger = logging.getLogger(LOGGER_NAME)
    handler, old_level = _ListHandler(into), logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)  # unconfigured (library use): nothing extra reaches the console
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
