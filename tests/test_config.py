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


def test_each_profile_sets_every_optimisation_knob():
    """Field defaults are the default profile's values: no other profile may inherit them."""
    knobs = {"model", "epochs", "batch_size", "learning_rate", "adam_beta_1", "adam_beta_2"}
    for name, preset in PROFILES.items():
        assert knobs <= preset.keys(), name


def test_adam_betas_reach_the_optimizer():
    from mnist import models, training

    config = TrainConfig(profile="fast", adam_beta_2=0.95)
    net = training.compile_model(
        models.build(config.model), 1e-3, betas=(config.adam_beta_1, config.adam_beta_2)
    )
    assert (net.optimizer.beta_1, net.optimizer.beta_2) == (0.7, 0.95)
