"""`main` (`app/cli/main.py`): every command is there, and each outcome of a command is one
line and its exit status."""

import signal

import pytest

import app.cli
from app.cli import _Terminated, admin, main, parser
from app.cli.options import UsageError
from mnist.errors import MnistError

COMMANDS = [
    "train",
    "retrain",
    "registry",
    "predict",
    "data",
    "serve",
    "models",
    "recipes",
    "doctor",
]


def test_every_command_is_there(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(f"\n    {name} " in out for name in COMMANDS), out


def test_an_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["fly"])
    assert exit_.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raised", "status", "line"),
    [
        (None, 0, ""),
        (UsageError("--x: bad"), 2, "mnist: error: --x: bad"),
        (MnistError("no model"), 1, "mnist: error: no model"),
        (BrokenPipeError(), 128 + signal.SIGPIPE, ""),
        (KeyboardInterrupt(), 128 + signal.SIGINT, "mnist: interrupted"),
        (_Terminated(), 128 + signal.SIGTERM, "mnist: interrupted"),
    ],
    ids=["ok", "usage", "error", "pipe", "ctrl-c", "sigterm"],
)
def test_each_outcome_is_one_line_and_a_status(monkeypatch, capsys, raised, status, line):
    def command(args):
        if raised is not None:
            raise raised

    monkeypatch.setattr(admin, "recipes", command)
    assert main(["recipes"]) == status
    assert capsys.readouterr().err.strip() == line


def test_sigterm_is_handled_as_ctrl_c_during_the_command_only(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    during = []
    monkeypatch.setattr(admin, "recipes", lambda args: during.append(signal.getsignal(15)))
    main(["recipes"])
    assert during == [app.cli._interrupt]
    assert signal.getsignal(signal.SIGTERM) is before
