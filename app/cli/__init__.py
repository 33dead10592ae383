"""The `mnist` command line: parses arguments, calls flows and library functions, prints.

Each command's options are built from the settings classes of `mnist.settings`
(`app.cli.options`), so a setting has one name, one default and one help text everywhere.
One module per command group (`training`, `registry`, `predict`, `data`, `serve`, `admin`);
`parser` assembles them, `main` checks the store addresses the command takes (`stores`), runs
it and turns its outcome into one line and an exit status. Heavy libraries (TensorFlow,
Prefect) are imported only by the commands that need them.
"""

from __future__ import annotations

# isort: off
import mnist.env  # noqa: F401  (first: env defaults before Prefect, MLflow, TensorFlow)

# isort: on
import argparse
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

from app.cli import (
    admin,
    data,
    ensemble,
    export,
    monitor,
    predict,
    registry,
    serve,
    stores,
    sweep,
    training,
)
from app.cli.exit import exit_now
from app.cli.options import UsageError
from mnist import outages
from mnist.errors import MnistError


def parser() -> argparse.ArgumentParser:
    """The whole command line: every command with its options."""
    p = argparse.ArgumentParser(
        prog="mnist", description="Train, track and use MNIST digit classifiers."
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (
        training,
        sweep,
        ensemble,
        registry,
        predict,
        data,
        serve,
        monitor,
        admin,
        export,
    ):
        group.add_parsers(commands)
    return p


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager's stop), handled as Ctrl-C is: runs are closed, then exit."""


_INTERRUPTS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: _Terminated}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _INTERRUPTS[signal.Signals(signum)]


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` (default: the process's arguments); returns the exit status:
    0, 1 for an error (one line on stderr), 2 for a bad option, 128 + N for signal N."""
    args = parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _interrupt) for s in _INTERRUPTS} if in_main_thread else {}
    try:
        stores.check(args)  # a wrong store address: one line, before any heavy import
        args.func(args)
    except UsageError as exc:
        print(f"mnist: error: {exc}", file=sys.stderr)
        return 2
    except MnistError as exc:
        print(f"mnist: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of the output went away (`mnist ... | head`)
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as exc:
        print("mnist: interrupted", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)
    except Exception as exc:
        line = outages.describe(exc)  # a store away for longer than the run rides out
        if line is None:
            raise
        print(f"mnist: error: {line}", file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def run() -> NoReturn:
    """The `mnist` command: `main`, then an exit without the interpreter's teardown."""
    exit_now(main())
