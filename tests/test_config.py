import pydantic
import pytest

from mnist.cli import main
from mnist.config import PROFILES, TrainConfig


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_are_presets(profile):
    config = TrainConfig(profile=profile)
    for key, value in PROFILES[profile].items():
        assert getattr(config, key) == value
    assert config.params()["profile"] == profile


def test_given_options_win_over_the_profile(monkeypatch):
    assert TrainConfig(profile="best", epochs=3).epochs == 3
    monkeypatch.setenv("MNIST_EPOCHS", "2")
    monkeypatch.setenv("MNIST_PROFILE", "best")
    config = TrainConfig()
    assert config.profile == "best" and config.epochs == 2
    assert config.model == PROFILES["best"]["model"]


def test_unknown_profile(capsys):
    with pytest.raises(pydantic.ValidationError):
        TrainConfig(profile="turbo")
    assert main(["train", "--profile", "turbo"]) == 2
    assert "--profile: Input should be 'fast', 'default' or 'best'" in capsys.readouterr().err
