"""An ensemble from models trained before: its references, and the one recipe and split of
its members, which become its own."""

from __future__ import annotations

import pytest

from mnist.errors import MnistError
from mnist.members import Member, config
from mnist.settings import EnsembleSettings, TrainConfig

RECIPE = {
    "profile": "best",
    "model": "wide",
    "epochs": "45",
    "batch_size": "128",
    "learning_rate": "0.003",
    "adam_beta_1": "0.9",
    "adam_beta_2": "0.999",
    "schedule": "one-cycle",
    "augment": "True",
    "elastic": "0.0",
    "label_smoothing": "0.1",
}


def _member(seed: int, **changed: str) -> Member:
    params = {**RECIPE, "seed": str(seed), "validation_split": "0.1", "train_limit": "None"}
    params |= {"nan_policy": "fail", "test_limit": "300", **changed}
    return Member(f"models:/m/{seed}", f"run{seed}", params)


def test_members_of_one_recipe_give_it_their_split_and_the_first_seed():
    given = TrainConfig.from_profile(profile="fast", seed=42, train_limit=500, test_limit=1000)
    made = config(given, [_member(3), _member(1), _member(2)])
    recipe = TrainConfig.from_profile(profile="best", epochs=45, validation_split=0.1).recipe
    assert made.recipe == recipe
    assert (made.profile, made.seed, made.train_limit, made.validation_split) == (
        "best",
        3,
        None,
        0.1,
    )
    assert made.test_limit == 1000  # how the ensemble is scored is the command's


def test_a_knob_newer_than_the_members_runs_is_what_they_trained_with():
    older = [_member(seed) for seed in (0, 1)]
    for member in older:
        del member.params["elastic"]  # runs from before elastic distortion was a knob
    made = config(TrainConfig.from_profile(profile="best", elastic=20.0), older)
    assert (made.augment, made.elastic) == (True, 0.0)
    # and an older run and a newer one of one recipe are members of one ensemble
    mixed = config(TrainConfig.from_profile(profile="best"), [older[0], _member(2)])
    assert (mixed.elastic, mixed.seed) == (0.0, 0)
    with pytest.raises(MnistError, match=r"\(elastic: 0.0, 16.0\)"):
        config(TrainConfig.from_profile(), [older[0], _member(2, elastic="16.0")])


def test_members_that_differ_are_named_with_what_differs():
    with pytest.raises(
        MnistError, match=r"differ in recipe or data \(epochs: 45, 30; augment: True"
    ):
        config(TrainConfig.from_profile(), [_member(0), _member(1, epochs="30", augment="False")])
    with pytest.raises(MnistError, match=r"\(train_limit: None, 600\)"):
        config(TrainConfig.from_profile(), [_member(0), _member(1, train_limit="600")])


def test_a_recipe_that_cannot_be_read_here_is_one_error():
    with pytest.raises(MnistError, match="the members' recipe cannot be used here"):
        config(
            TrainConfig.from_profile(),
            [_member(0, profile="gone.toml"), _member(1, profile="gone.toml")],
        )


ELEVEN = ",".join(f"models:/m/{i}" for i in range(11))


@pytest.mark.parametrize("refs", ["models:/m/1", "models:/m/1,models:/m/1", ELEVEN])
def test_fewer_than_two_or_repeated_references_are_refused(refs):
    with pytest.raises(ValueError, match="give 2 to 10 different model references"):
        EnsembleSettings(from_models=refs).member_refs()


def test_references_are_split_and_trimmed():
    settings = EnsembleSettings(from_models="models:/m/1, models:/m@champion ,runs:/abc/model")
    assert settings.member_refs() == ["models:/m/1", "models:/m@champion", "runs:/abc/model"]
