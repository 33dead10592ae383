"""Settings by concern and recipes as data: profiles, overrides, user recipe files."""

import pydantic
import pytest

from app.cli import main
from mnist.recipe import RECIPES_DIR, Recipe, load_recipe, recipe_names
from mnist.settings import TrainConfig

BUILT_IN = ["best", "default", "fast", "reference"]


@pytest.mark.parametrize("profile", BUILT_IN)
def test_profiles_are_recipe_files(profile):
    recipe = load_recipe(profile)
    config = TrainConfig(profile=profile)
    assert config.recipe == recipe
    assert config.params()["profile"] == profile


def test_built_in_recipes():
    assert set(BUILT_IN) <= set(recipe_names())
    assert load_recipe("fast").model == "small" and load_recipe("best").augment


def test_given_options_win_over_the_profile(monkeypatch):
    assert TrainConfig(profile="best", epochs=3).epochs == 3
    monkeypatch.setenv("MNIST_EPOCHS", "2")
    monkeypatch.setenv("MNIST_PROFILE", "best")
    config = TrainConfig()
    assert config.profile == "best" and config.epochs == 2
    assert config.model == load_recipe("best").model


def test_unknown_profile(capsys):
    with pytest.raises(pydantic.ValidationError):
        TrainConfig(profile="turbo")
    assert main(["train", "--profile", "turbo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "mnist: error: invalid option(s): --profile: unknown recipe 'turbo'; choose one of: "
        "best, default, fast, reference (or a .toml file)"
    )


def test_a_user_recipe_file_without_python(tmp_path, monkeypatch, capsys):
    text = load_recipe("fast").model_dump()
    lines = [f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in text.items()]
    lines = [line.replace("'", '"') for line in lines]
    (tmp_path / "quick.toml").write_text("\n".join(lines).replace("epochs = 2", "epochs = 1"))
    monkeypatch.setenv("MNIST_RECIPES_DIR", str(tmp_path))
    assert TrainConfig(profile="quick").epochs == 1
    assert TrainConfig(profile=str(tmp_path / "quick.toml")).model == "small"
    assert main(["recipes"]) == 0
    assert "quick" in capsys.readouterr().out


def test_an_incomplete_recipe_is_refused_by_name(tmp_path, capsys):
    path = tmp_path / "half.toml"
    path.write_text('model = "small"\nepochs = 2\n')
    assert main(["train", "--profile", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"recipe {path}: batch_size: Field required" in err and len(err.splitlines()) == 1
    path.write_text("model = [")
    assert main(["train", "--profile", str(path)]) == 2
    assert f"recipe {path}: cannot read it" in capsys.readouterr().err


def test_every_built_in_recipe_file_sets_every_knob():
    """No built-in recipe silently takes a knob's default."""
    import tomllib

    for path in RECIPES_DIR.glob("*.toml"):
        assert set(tomllib.loads(path.read_text())) == set(Recipe.model_fields), path.name


def test_a_recipe_file_older_than_a_knob_means_what_it_meant(tmp_path):
    """Only the knobs added later have defaults: the behaviour from before they existed."""
    newer = {"elastic": 0.0, "validation_split": 0.1}
    assert {k for k, f in Recipe.model_fields.items() if not f.is_required()} == set(newer)
    text = (RECIPES_DIR / "fast.toml").read_text()
    older = "".join(line for line in text.splitlines(True) if line.split(" =")[0] not in newer)
    (tmp_path / "old.toml").write_text(older)
    assert load_recipe(str(tmp_path / "old.toml")) == Recipe(
        **{**load_recipe("fast").model_dump(), **newer}
    )


def test_adam_betas_reach_the_optimizer():
    """The optimizer `training.train` builds from a recipe has the recipe's betas, and an
    override wins over the profile's."""
    import numpy as np

    from mnist import preprocess, training

    config = TrainConfig(profile="fast", adam_beta_2=0.95, epochs=1, batch_size=8)
    assert (config.adam_beta_1, config.adam_beta_2) == (0.7, 0.95)  # fast's beta_1: 0.7
    rng = np.random.default_rng(0)
    tiny = preprocess.Arrays(
        rng.random((16, 28, 28, 1), np.float32), np.eye(10)[np.arange(16) % 10]
    )
    empty = tiny.take(np.arange(0))
    net, _ = training.train(config, preprocess.Prepared(tiny, empty, empty, empty))
    optimizer = net.optimizer
    assert (optimizer.beta_1, optimizer.beta_2) == pytest.approx((0.7, 0.95))


def test_a_warm_start_trains_for_the_fine_tuning_epochs_and_rate():
    from mnist import training

    config = TrainConfig(profile="fast", finetune_epochs=3, finetune_learning_rate=5e-4)
    assert training.plan(config, warm=False) == (config.epochs, config.learning_rate)
    assert training.plan(config, warm=True) == (3, 5e-4)
