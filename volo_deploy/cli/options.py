"""Generic mapping between option dataclasses (fields marked with :func:`volo_deploy.options.flag`)
and ``argparse`` flags: backends declare their options, the CLI owns the parsing."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from volo_deploy.options import CLI_KEY, Flag


def cli_fields(options_cls: type | None) -> list[tuple[dataclasses.Field, Flag]]:
    """The fields of ``options_cls`` that are command-line flags, in declaration order."""
    if options_cls is None or not dataclasses.is_dataclass(options_cls):
        return []
    return [(f, f.metadata[CLI_KEY]) for f in dataclasses.fields(options_cls) if CLI_KEY in f.metadata]


def add_option_flags(parser, options_cls: type | None) -> None:
    """Add one flag per marked field of ``options_cls`` (a bool field with default False is a switch,
    a tuple field a repeatable flag)."""
    for f, fl in cli_fields(options_cls):
        if f.default is False:
            parser.add_argument(fl.name, dest=f.name, action="store_true", help=fl.help)
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": f.default, "help": fl.help}
        if isinstance(f.default, tuple):
            kwargs.update(action="append", default=None)
        if fl.parse is not None:
            kwargs["type"] = fl.parse
        if fl.choices is not None:
            kwargs["choices"] = fl.choices
        if fl.metavar is not None:
            kwargs["metavar"] = fl.metavar
        parser.add_argument(fl.name, **kwargs)


def options_from_args(options_cls: type | None, args: argparse.Namespace) -> Any:
    """An ``options_cls`` instance from parsed flags (fields without a flag keep their defaults)."""
    if options_cls is None:
        return None
    values = {f.name: getattr(args, f.name) for f, _ in cli_fields(options_cls) if hasattr(args, f.name)}
    for f, _ in cli_fields(options_cls):
        if isinstance(f.default, tuple) and f.name in values:  # repeatable flag: a tuple, () when not given
            values[f.name] = tuple(values[f.name] or ())
    return options_cls(**values)
