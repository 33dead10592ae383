"""flows/sweep.py `_open`: the study a sweep run from a deployment (no command line) starts,
on a real Optuna study in a SQLite file."""

from flows.sweep import _open
from mnist.settings import SweepSettings


def test_a_deployed_sweep_of_best_holds_out_its_spaces_split(tmp_path):
    """`best` trains its final models on all the data; its sweep's trials are scored on 0.1."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study, config, space, *_ = _open(None, SweepSettings(space="best", trials=2), url)
    assert (config.profile, config.validation_split, space.validation_split) == ("best", 0.1, 0.1)
    assert study.study_name.startswith("sweep-best-")
