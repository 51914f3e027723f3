"""The package logger ``volo_deploy``: library modules log to ``logging.getLogger(__name__)``,
the CLIs call :func:`configure` once; records are written with ``tqdm.write`` so progress bars
stay intact (``tqdm.contrib.logging.logging_redirect_tqdm`` does the same, but only for handlers
that exist when its block starts). :func:`capture` also collects the INFO+ messages of a block (a bench row's log).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER_NAME = "volo_deploy"
_PREFIX = {logging.DEBUG: "debug: ", logging.WARNING: "warning: ", logging.ERROR: "error: ",
           logging.CRITICAL: "error: "}


class TqdmHandler(logging.Handler):
    """Writes each record through ``tqdm.write`` to stderr (read at emit time), above any bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a broken stream must not end the run: logging's own convention
            self.handleError(record)


class _Formatter(logging.Formatter):
    """INFO as the bare message, other levels prefixed (``warning: ...``); another library's records
    also name their logger."""

    def format(self, record: logging.LogRecord) -> str:
        ours = record.name == LOGGER_NAME or record.name.startswith(LOGGER_NAME + ".")
        origin = "" if ours or record.name == "root" else f"{record.name}: "
        return _PREFIX.get(record.levelno, "") + origin + super().format(record)


def level_for(verbose: bool = False, quiet: bool = False) -> int:
    """INFO by default, DEBUG with ``-v``, WARNING with ``-q``."""
    return logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO


def configure(level: int = logging.INFO) -> logging.Handler:
    """For entry points: show the package's records at ``level`` and above (other libraries' from WARNING,
    the root logger's level) on stderr through tqdm; replaces an earlier call's handler.

    The handler sits on the root logger, so a library that logs through ``logging.warning()`` (which
    would otherwise add a second, plain root handler) is written the same way and nothing twice. The
    package logger passes INFO on whatever ``level``, so :func:`capture` sees the same lines under ``-q``.
    """
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, TqdmHandler)]:
        root.removeHandler(h)
    handler = TqdmHandler(level)
    handler.setFormatter(_Formatter("%(message)s"))
    root.addHandler(handler)
    logging.getLogger(LOGGER_NAME).setLevel(min(level, logging.INFO))
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
