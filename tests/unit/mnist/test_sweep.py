"""Search spaces (`mnist.sweep_space`) and the study's bookkeeping (`mnist.sweep`), on a real
Optuna study in a SQLite file."""

from __future__ import annotations

import math

import optuna
import pytest

from mnist import sweep
from mnist.addresses import absolute_sqlite
from mnist.settings import SweepSettings, TrainConfig
from mnist.sweep_space import Objective, load_space, space_names


def _space(tmp_path, text: str) -> str:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return str(path)


def test_the_built_in_spaces_load_and_name_recipes_that_exist():
    assert {"default", "best"} <= set(space_names())
    for name in space_names():
        space = load_space(name)
        assert space.params and TrainConfig.from_profile(profile=space.base).model


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('base = "fast"\n[params.dropout]\nlow = 0.1\nhigh = 0.5\n', "unknown option(s) dropout"),
        ('base = "fast"\n[params.epochs]\nlow = 3\nhigh = 3\n', "empty range"),
        ('base = "fast"\n[params.batch_size]\nchoices = []\n', "empty list of choices"),
        ('base = "fast"\n[params.learning_rate]\nlow = 0\nhigh = 1\nlog = true\n', "log range"),
        ('base = "fast"\n[params.learning_rate]\nlow = 0.1\nhigh = 2\n', "params.learning_rate"),
        ('base = "fast"\n[params.epochs]\nlow = 1\nhigh = 3\nchoices = [2]\n', "not both"),
        ('base = "nope"\n[params.epochs]\nlow = 1\nhigh = 3\n', "unknown recipe 'nope'"),
        ('base = "fast"\n', "params"),
        ('base = "fast"\n[params.augment]\nlow = 0\nhigh = 1\n', "give choices, not a range"),
        ('base = "fast"\n[params.epochs]\nlow = 1\nhigh = 2.5\n', "whole-number knob"),
        ('base = "fast"\n[params.epochs\n', "cannot read it"),
        ('base = "fast"\n[params.validation_split]\nlow = 0.1\nhigh = 0.2\n', "fixes it"),
        ('base = "fast"\nvalidation_split = 0\n[params.epochs]\nlow = 1\nhigh = 3\n', "greater"),
    ],
    ids=[
        "unknown",
        "empty",
        "no-choices",
        "log-zero",
        "out-of-bounds",
        "both",
        "base",
        "none",
        "bool-range",
        "fractional-int",
        "toml",
        "split-varied",
        "split-none",
    ],
)
def test_a_wrong_space_is_one_error_naming_the_file_and_the_problem(tmp_path, text, problem):
    path = _space(tmp_path, text)
    with pytest.raises(ValueError) as caught:
        load_space(path)
    assert path in str(caught.value) and problem in str(caught.value), caught.value
    assert "\n" not in str(caught.value)


def test_an_unknown_space_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown search space 'nope'; choose one of: best"):
        load_space("nope")


def test_a_trial_gets_values_inside_the_space_of_the_knobs_types(tmp_path):
    text = """base = "fast"
[params.epochs]
low = 1
high = 9
step = 2
[params.learning_rate]
low = 1e-4
high = 1e-1
log = true
[params.augment]
choices = [true, false]
"""
    space = load_space(_space(tmp_path, text))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        values = space.suggest(study.ask())
        assert isinstance(values["epochs"], int) and values["epochs"] in (1, 3, 5, 7, 9)
        assert 1e-4 <= values["learning_rate"] <= 1e-1
        assert values["augment"] in (True, False)
        TrainConfig(**{**TrainConfig.from_profile(profile="fast").model_dump(), **values})


def test_objectives_parse_and_go_the_right_way():
    assert Objective.parse("accuracy").direction == "maximize"
    timed = Objective.parse("time-to:0.99")
    assert timed.direction == "minimize" and timed.target == 0.99 and str(timed) == "time-to:0.99"
    assert timed.intermediate(0.97) == pytest.approx(0.03) and timed.reached(0.991)
    assert not Objective().reached(1.0)
    for bad in ("loss", "time-to:", "time-to:1.5", "time-to:x"):
        with pytest.raises(ValueError, match="give accuracy or time-to:ACCURACY"):
            Objective.parse(bad)
    with pytest.raises(ValueError, match="objective"):
        SweepSettings(objective="fastest")


def test_a_resume_fails_the_orphaned_trials_and_runs_their_values_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    space = load_space("default")
    config = TrainConfig.from_profile(profile="default")
    study = sweep.create("orphans", url, config, space, Objective(), trials=4)
    done = study.ask()
    space.suggest(done)
    study.tell(done, 0.9)
    orphan = study.ask()  # the driver died while this one ran
    values = space.suggest(orphan)

    resumed = sweep.load("orphans", url)
    assert sweep.reclaim(resumed) == [orphan.number]
    assert sweep.finished(resumed) == 1  # the failed orphan is not counted: it runs again
    again = resumed.ask()
    assert space.suggest(again) == values and again.number != orphan.number
    stored, _, objective, trials = sweep.settings_of(resumed)
    assert TrainConfig(**stored) == config and trials == 4 and str(objective) == "accuracy"


def test_a_trial_that_finished_after_its_driver_died_is_told_not_run_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    space, config = load_space("default"), TrainConfig.from_profile()
    study = sweep.create("late", url, config, space, Objective(), trials=3)
    finished_late, lost = study.ask(), study.ask()
    space.suggest(finished_late)
    space.suggest(lost)
    ended = {
        finished_late.number: sweep.TrialResult(finished_late.number, "complete", 0.9, 2, "w", "r")
    }
    resumed = sweep.load("late", url)
    assert sweep.reclaim(resumed, ended) == [lost.number]
    states = {t.number: t.state.name for t in resumed.trials}
    assert states[finished_late.number] == "COMPLETE" and states[lost.number] == "FAIL"
    assert sweep.finished(resumed) == 1


def test_the_best_trial_is_a_complete_one_with_a_finite_score(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    space, config = load_space("default"), TrainConfig.from_profile()
    study = sweep.create("timed", url, config, space, Objective(0.99), trials=3)
    never, pruned = study.ask(), study.ask()
    for trial in (never, pruned):
        space.suggest(trial)
    study.tell(never, math.inf)  # never reached the target
    pruned.report(0.001, 2)  # a pruned trial keeps its last report as its value
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    with pytest.raises(sweep.SweepError, match="no trial completed with a score"):
        sweep.best(study)
    reached = study.ask()
    space.suggest(reached)
    study.tell(reached, 42.0)
    assert sweep.best(study).number == reached.number


def test_looking_for_a_study_makes_no_storage_file_and_a_half_made_one_is_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    with pytest.raises(sweep.SweepError, match="no study named 'x'"):
        sweep.load("x", url)
    assert not (tmp_path / "studies.db").exists()
    optuna.create_study(study_name="half", storage=url)  # killed before its settings were kept
    with pytest.raises(sweep.SweepError, match="was not fully made"):
        sweep.load("half", url)


def test_a_study_name_is_used_once_and_an_unknown_one_is_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    config, space = TrainConfig.from_profile(), load_space("default")
    sweep.create("once", url, config, space, Objective(), trials=1)
    with pytest.raises(sweep.SweepError, match="exists in the study storage: --resume once"):
        sweep.create("once", url, config, space, Objective(), trials=1)
    with pytest.raises(sweep.SweepError, match=r"no study named 'twice' .*studies there: once"):
        sweep.load("twice", url)


def test_a_time_objective_never_reached_scores_infinity():
    assert math.isinf(sweep.Verdict().score(Objective(0.99), 0.98))
    assert sweep.Verdict(seconds_to_target=12.5).score(Objective(0.99), 0.995) == 12.5
    assert sweep.Verdict().score(Objective(), 0.97) == pytest.approx(0.97)


def test_sqlite_urls_become_absolute_for_workers_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite("sqlite:///s.db") == f"sqlite:///{tmp_path / 's.db'}"
    assert absolute_sqlite("sqlite:////abs/s.db") == "sqlite:////abs/s.db"
    assert absolute_sqlite("postgresql://u@h/db") == "postgresql://u@h/db"
