"""Command-line flags declared on option dataclasses, and the value parsers they use.

A backend's frozen ``Options`` dataclass marks each field a user may set with :func:`flag`
(flag name, help, parser, choices); ``volo_deploy.cli.options`` turns the marked fields into
``argparse`` flags and back into an ``Options`` instance. Fields without :func:`flag` are
runtime-only (set by code). Nothing here imports ``argparse`` users or backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any

CLI_KEY = "volo_cli"


@dataclass(frozen=True)
class Flag:
    """How one option field appears on the command line."""

    name: str  # e.g. "--threads"
    help: str
    parse: Callable[[str], Any] | None = None  # argparse ``type``; None: str (bool fields: a switch)
    choices: tuple[str, ...] | None = None
    metavar: str | None = None


def flag(name: str, help: str, default: Any = None, *, parse: Callable[[str], Any] | None = None,
         choices: tuple[str, ...] | None = None, metavar: str | None = None) -> Any:
    """A dataclass field with ``default`` that ``volo-export`` exposes as ``name``."""
    meta = {CLI_KEY: Flag(name, help, parse, choices, metavar)}
    return field(default=default, metadata=meta) if default is not MISSING else field(metadata=meta)


def at_least(kind: type, low: float, what: str) -> Callable[[str], Any]:
    """A parser (argparse ``type``) that parses ``kind`` and refuses values below ``low``."""
    import argparse

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, found {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, found {value}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def finite_in(low: float, high: float, what: str, *, high_open: bool = False) -> Callable[[str], float]:
    """A parser (argparse ``type``) of a finite float in ``[low, high]`` (``[low, high)`` with ``high_open``):
    NaN and infinities are refused, whatever the bounds."""
    import argparse
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = low <= value < high if high_open else low <= value <= high
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"expected {what}, found {text!r}")
        return value

    parse.__name__ = "float"  # argparse names the type in its messages
    return parse


positive_int = at_least(int, 1, "a positive integer")
non_negative_int = at_least(int, 0, "an integer >= 0")
non_negative_float = at_least(float, 0.0, "a number >= 0")
