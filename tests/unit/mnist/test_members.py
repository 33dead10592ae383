"""An ensemble from models trained before: its references and the one recipe of its members."""

from __future__ import annotations

import pytest

from mnist.errors import MnistError
from mnist.members import Member, one_recipe
from mnist.settings import EnsembleSettings

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
    "label_smoothing": "0.1",
}


def _member(seed: int, **changed: str) -> Member:
    params = {**RECIPE, "seed": str(seed), "validation_split": "0.1", **changed}
    return Member(f"models:/m/{seed}", f"run{seed}", params)


def test_members_of_one_recipe_give_it_whatever_their_seeds():
    assert one_recipe([_member(0), _member(1), _member(2)]) == RECIPE


def test_members_of_two_recipes_are_named_with_what_differs():
    with pytest.raises(MnistError, match=r"other recipes \(epochs: 45, 30; augment: True, False\)"):
        one_recipe([_member(0), _member(1, epochs="30", augment="False")])


ELEVEN = ",".join(f"models:/m/{i}" for i in range(11))


@pytest.mark.parametrize("refs", ["models:/m/1", "models:/m/1,models:/m/1", ELEVEN])
def test_fewer_than_two_or_repeated_references_are_refused(refs):
    with pytest.raises(ValueError, match="give 2 to 10 different model references"):
        EnsembleSettings(from_models=refs).member_refs()


def test_references_are_split_and_trimmed():
    settings = EnsembleSettings(from_models="models:/m/1, models:/m@champion ,runs:/abc/model")
    assert settings.member_refs() == ["models:/m/1", "models:/m@champion", "runs:/abc/model"]
