"""Options built from the settings classes (`app/cli/options.py`): names, help, variables,
one-line usage errors."""

import pytest

from app.cli import main, parser
from app.cli.options import settings
from mnist.settings import ServeSettings, TrainConfig


def test_help_lists_every_training_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--seed",
        "--model",
        "--validation-split",
        "--data-dir",
        "--nan-policy",
        "--experiment",
    ):
        assert option in out
    assert "MNIST_EPOCHS" in out


def test_every_setting_of_a_training_run_is_an_option():
    args = parser().parse_args(["train"])
    assert set(TrainConfig.model_fields) <= set(vars(args))
    assert all(getattr(args, name) is None for name in TrainConfig.model_fields)  # not given


def test_help_names_the_variable_and_where_the_default_comes_from(capsys):
    with pytest.raises(SystemExit):
        main(["retrain", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "[env MNIST_EPOCHS; from the recipe]" in out
    assert "[env MNIST_SEED; default 42]" in out
    assert "[env MNIST_GATE_FLOOR; default 0.99]" in out
    assert "[env MNIST_SCHEDULE; from the recipe; one of one-cycle, constant]" in out
    assert "--augment, --no-augment" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs: Input should be greater than or equal to 1"),
        (["--nan-policy", "skip"], "--nan-policy: Input should be 'fail', 'drop' or 'impute'"),
        (["--batch-size", "many"], "--batch-size: Input should be a valid integer"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, args, message):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnist: error: invalid option(s)") and message in err
    assert len(err.splitlines()) == 1


def test_environment_variables_set_options(capsys, monkeypatch):
    monkeypatch.setenv("MNIST_EPOCHS", "-3")
    assert main(["train"]) == 2
    assert "--epochs: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_an_option_wins_over_the_variable_and_the_recipe(monkeypatch):
    monkeypatch.setenv("MNIST_EPOCHS", "7")
    assert settings(parser().parse_args(["train"]), TrainConfig).epochs == 7
    args = parser().parse_args(["train", "--epochs", "3", "--no-augment", "--profile", "fast"])
    config = settings(args, TrainConfig)
    assert (config.epochs, config.augment, config.profile) == (3, False, "fast")


def test_the_split_of_best_holds_none_out_under_its_variable_and_option(monkeypatch):
    assert (
        settings(parser().parse_args(["train", "--profile", "best"]), TrainConfig).validation_split
        == 0
    )
    monkeypatch.setenv("MNIST_VALIDATION_SPLIT", "0.2")
    assert (
        settings(parser().parse_args(["train", "--profile", "best"]), TrainConfig).validation_split
        == 0.2
    )
    args = parser().parse_args(["train", "--profile", "best", "--validation-split", "0.3"])
    assert settings(args, TrainConfig).validation_split == 0.3


def test_a_sweep_holds_out_its_spaces_split_unless_told_another(monkeypatch):
    from app.cli.sweep import space_defaults
    from mnist.sweep_space import load_space

    def split(*given: str) -> float:
        args = parser().parse_args(["sweep", "--space", "best", *given])
        space_defaults(args, load_space("best"))
        return settings(args, TrainConfig).validation_split

    monkeypatch.delenv("MNIST_VALIDATION_SPLIT", raising=False)
    assert split() == 0.1  # though `best`, its base recipe, holds none out
    assert split("--validation-split", "0.3") == 0.3
    monkeypatch.setenv("MNIST_VALIDATION_SPLIT", "0.2")
    assert split() == 0.2


def test_serve_binds_loopback_unless_told(monkeypatch):
    assert settings(parser().parse_args(["serve"]), ServeSettings).host == "127.0.0.1"
    monkeypatch.setenv("MNIST_SERVE_HOST", "0.0.0.0")
    assert settings(parser().parse_args(["serve"]), ServeSettings).host == "0.0.0.0"
    args = parser().parse_args(["serve", "--host", "::1", "--port", "9"])
    assert settings(args, ServeSettings).model_dump(include={"host", "port"}) == {
        "host": "::1",
        "port": 9,
    }


def test_a_bad_label_is_a_usage_error(tmp_path, capsys):
    store = ["--datastore", f"sqlite:///{tmp_path / 'data.db'}"]
    assert main(["data", "add", str(tmp_path / "x.png"), "--label", "12", *store]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mnist: error: --label: expected a digit 0-9, got '12'"
