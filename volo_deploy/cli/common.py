"""Shared CLI plumbing: user errors become one line on stderr and a non-zero exit; ``--version``,
``-v/-q`` and the package logger's configuration, the same on every command."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from volo_deploy.errors import Interrupted, VoloDeployError, is_disk_full
from volo_deploy.options import at_least, non_negative_float, non_negative_int, positive_int  # noqa: F401


def quiet_third_party() -> None:
    """Silence exporter chatter that says nothing to a user (torchvision op skips, deprecations)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in (
        "torch.onnx",
        "torch.onnx._internal.exporter._registration",
        "torch._dynamo",
        "torch.export",
        "nncf",
        "onnxscript",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    logging.getLogger().addFilter(_not_ort_preprocess_advice)


def _not_ort_preprocess_advice(record: logging.LogRecord) -> bool:
    """False for onnxruntime.quantization's root-logger advice to run its ``quant_pre_process`` script
    (logged on every quantize call): nothing a user of these commands can act on."""
    msg = record.getMessage()
    return not (msg.startswith("Please consider") and "pre-processing before quantization" in msg)


def add_common_flags(parser: argparse.ArgumentParser, quiet_help: str = "show only warnings and errors") -> None:
    """``--version``, ``-v/--verbose`` and ``-q/--quiet`` (one of the two)."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="also show debug messages")
    loud.add_argument("-q", "--quiet", action="store_true", help=quiet_help)


def package_version() -> str:
    """The installed distribution's version (``importlib.metadata``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("volo_deploy")
    except PackageNotFoundError:
        return "unknown (volo_deploy is not installed)"


def setup_logging(args: argparse.Namespace) -> None:
    """The package logger at INFO, DEBUG with ``-v``, WARNING with ``-q``, written through tqdm."""
    from volo_deploy.logs import configure, level_for

    configure(level_for(verbose=args.verbose, quiet=args.quiet))


#: The exit codes of volo-export and volo-bench (README "When things go wrong"), for their --help.
EXIT_CODES_HELP = ("exit codes: 0 done; 1 the work failed (an export or its validation; volo-bench: a row failed, "
                   "after every report file is written) or the data/checkpoint is wrong; 2 bad input or state "
                   "(an argument, a damaged state file, an --out folder in use, a full disk, an existing path that "
                   "is not a regular file: symlinks included, they are never written through); 130 Ctrl-C; "
                   "143 SIGTERM; 129 SIGHUP (cleaned up as for Ctrl-C, nothing published)")

#: Signals handled as Ctrl-C is (cleanup, then exit 128 + signal number): 143 for SIGTERM, 129 for SIGHUP.
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise_interrupted(signum: int, frame) -> None:
    for s in TERMINATING_SIGNALS:  # a second signal must not interrupt the cleanup the first one started
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def terminating_signals_raise() -> Iterator[None]:
    """While inside: SIGTERM/SIGHUP raise :class:`Interrupted` in the main thread (staging folders are removed
    by the same ``finally`` blocks as on Ctrl-C); the earlier handlers come back after."""
    try:
        previous = {s: signal.signal(s, _raise_interrupted) for s in TERMINATING_SIGNALS}
    except ValueError:  # not the main thread: signals stay as they are
        yield
        return
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_cli(fn: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call ``fn(argv)``; turn a :class:`VoloDeployError` into ``error: ...`` and its exit code, a full disk
    into exit 2, Ctrl-C into 130, SIGTERM into 143 and SIGHUP into 129 (after the same cleanup)."""
    quiet_third_party()
    with terminating_signals_raise():
        try:
            return fn(argv)
        except VoloDeployError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            print(f"error: disk full while writing {exc.filename or 'the output'} ({exc.strerror})", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            name = signal.Signals(exc.signum).name if isinstance(exc, Interrupted) else "Ctrl-C"
            print(f"interrupted ({name})", file=sys.stderr)
            return exc.exit_code if isinstance(exc, Interrupted) else 130


def add_layout_argument(parser, flag: str, data_flag: str) -> None:
    """``flag`` (e.g. ``--layout``): the dataset layout of ``data_flag``, one of the layout registry's names."""
    from volo_deploy.data.layouts import LAYOUTS

    parser.add_argument(flag, choices=sorted(LAYOUTS), default=None,
                        help=f"layout of {data_flag} (default: detected; needed when a folder matches several, "
                             f"e.g. a flat val folder with both devkit and Kaggle labels): "
                             + "; ".join(f"{r.name}: {r.help}" for r in LAYOUTS.values()).replace("%", "%%"))


def check_layout_use(flag: str, layout: str | None, data_flag: str, data) -> None:
    """BadInputError when a layout is given without the data it describes."""
    from volo_deploy.errors import BadInputError

    if layout is not None and data is None:
        raise BadInputError(f"{flag} {layout} describes {data_flag}, which is not given")
