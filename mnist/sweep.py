"""Hyper-parameter sweeps: an Optuna study (TPE sampler, median pruner) kept in SQL, whose
trials are training runs that report each epoch's validation accuracy to the pruner.

The study keeps what it was started with (the training settings, the search space, the
objective, the number of trials, its MLflow run) as user attributes, so that a resume needs
only its name. A trial left RUNNING by a driver that died is failed on resume and its values
queued again; finished trials are never repeated.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import optuna

from mnist.errors import MnistError
from mnist.sweep_space import Objective, Space

if TYPE_CHECKING:
    import keras

    from mnist.settings import TrainConfig

FILE_NAME = "mnist-sweeps.db"
STARTUP_TRIALS = 2
"""Trials the pruner lets finish before it compares (and the sampler samples at random)."""

TrialState = Literal["complete", "pruned", "failed"]

optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happened


class SweepError(MnistError):
    """A study that cannot be made, found or resumed."""


@dataclass(frozen=True)
class TrialResult:
    """How a trial ended, as its task returns it to the driver."""

    number: int
    state: TrialState
    value: float | None
    epochs: int
    worker: str
    run_id: str
    error: str = ""


def default_storage() -> str:
    """A SQLite file beside the MLflow store (or in the per-user state directory)."""
    from mnist import tracking

    return f"sqlite:///{tracking.state_dir() / FILE_NAME}"


def storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's SQL storage at `url`: SQLite waits up to 60 s for another writer (trials on
    several workers report at once); PostgreSQL connections are checked before use."""
    from sqlalchemy.engine import make_url

    from mnist.datastore.engines import CONNECT_SECONDS

    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):  # psycopg 3, as the data store's
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_SECONDS}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # a wrong driver, a refused port: deep in SQLAlchemy
        from mnist.addresses import safe_url
        from mnist.errors import first_line

        raise SweepError(f"study storage {safe_url(url)}: {first_line(exc)}") from exc


def pruner() -> optuna.pruners.BasePruner:
    """Stops a trial after an epoch (from the second on) whose validation accuracy is below the
    median of the complete trials' at that epoch, once `STARTUP_TRIALS` have completed."""
    return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=2)


def _sampler(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # constant_liar is "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: trials running at once on several workers are told apart
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=STARTUP_TRIALS, constant_liar=True
        )


def create(
    name: str,
    url: str,
    config: TrainConfig,
    space: Space,
    objective: Objective,
    trials: int,
) -> optuna.Study:
    """A new study `name` in the storage at `url`, with what a resume needs."""
    if name in names(url):
        raise SweepError(f"a study named {name!r} exists in the study storage: --resume {name}")
    study = optuna.create_study(
        storage=storage(url),
        study_name=name,
        direction=objective.direction,
        sampler=_sampler(config.seed),
        pruner=pruner(),
    )
    study.set_user_attr("config", config.model_dump(mode="json"))
    study.set_user_attr("space", space.model_dump(mode="json"))
    study.set_user_attr("objective", str(objective))
    study.set_user_attr("trials", trials)
    return study


def names(url: str) -> list[str]:
    """The studies in the storage at `url`; none (and no file made) for a SQLite file that
    does not exist."""
    from mnist.datastore.engines import sqlite_file

    if (path := sqlite_file(url)) is not None and not path.exists():
        return []
    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage(url)))


def load(name: str, url: str) -> optuna.Study:
    """The study `name` in the storage at `url`, with its sampler and pruner."""
    from mnist.addresses import safe_url

    if name not in (known := names(url)):
        there = ", ".join(known) or "none"
        raise SweepError(f"no study named {name!r} in {safe_url(url)} (studies there: {there})")
    study = optuna.load_study(study_name=name, storage=storage(url), pruner=pruner())
    if not {"config", "space", "objective", "trials"} <= set(study.user_attrs):
        raise SweepError(
            f"study {name!r} in {safe_url(url)} was not fully made (its start was interrupted): "
            "start another with a new --name"
        )
    study.sampler = _sampler(int(study.user_attrs["config"]["seed"]))
    return study


def settings_of(study: optuna.Study) -> tuple[dict[str, Any], Space, Objective, int]:
    """What the study was started with: the training settings, space, objective and trials."""
    attrs = study.user_attrs
    return (
        attrs["config"],
        Space(**attrs["space"]),
        Objective.parse(attrs["objective"]),
        int(attrs["trials"]),
    )


def reclaim(study: optuna.Study, ended: dict[int, TrialResult] | None = None) -> list[int]:
    """The trials a stopped driver left RUNNING: those that `ended` says finished on their
    worker meanwhile are told so; the others are failed and their values queued again. Returns
    the numbers of those queued again."""
    from optuna.trial import TrialState as State

    again = []
    for trial in study.get_trials(deepcopy=False, states=(State.RUNNING,)):
        if (result := (ended or {}).get(trial.number)) is not None:
            tell(study, trial.number, result)
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "reclaimed", True)
        study.tell(trial.number, state=State.FAIL)
        study.enqueue_trial(trial.params)
        again.append(trial.number)
    return again


def tell(study: optuna.Study, number: int, result: TrialResult | None, error: str = "") -> None:
    """Record how trial `number` ended (None: its task broke); a failure keeps its reason."""
    from optuna.trial import TrialState as State

    if result is None or result.state == "failed":
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        study._storage.set_trial_user_attr(trial_id, "error", error or (result and result.error))
        study.tell(number, state=State.FAIL)
    elif result.state == "pruned":
        study.tell(number, state=State.PRUNED)
    else:
        study.tell(number, result.value)


def best(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best complete trial with a finite value (a time objective never reached scores
    infinity; a pruned trial keeps its last intermediate value, which is no score)."""
    from optuna.trial import TrialState as State

    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(State.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    if not complete:
        errors = sorted({str(t.user_attrs.get("error")) for t in study.trials} - {"None", ""})
        why = f": {errors[0]}" if errors else ""
        raise SweepError(f"study {study.study_name}: no trial completed with a score{why}")
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: float(t.value))  # type: ignore[arg-type]


def finished(study: optuna.Study) -> int:
    """Trials that count towards the study's total: complete, pruned or failed while running."""
    from optuna.trial import TrialState as State

    done = study.get_trials(deepcopy=False, states=(State.COMPLETE, State.PRUNED, State.FAIL))
    # a trial failed by `reclaim` is run again from the queue: not counted twice
    return len(done) - sum(1 for t in done if t.user_attrs.get("reclaimed"))


def trial_of(name: str, url: str, number: int) -> optuna.Trial:
    """A live handle on trial `number` of study `name`, for the process that runs it."""
    study = optuna.load_study(study_name=name, storage=storage(url), pruner=pruner())
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.Trial(study, trial_id)


@dataclass
class Verdict:
    """How a trial's `fit` ended: stopped by the pruner, or when (training seconds) it reached
    a time objective's target."""

    pruned: bool = False
    seconds_to_target: float | None = None

    def score(self, objective: Objective, last_val_accuracy: float) -> float:
        """The trial's value once `fit` ended without pruning."""
        if objective.target is None:
            return float(last_val_accuracy)
        return self.seconds_to_target if self.seconds_to_target is not None else math.inf


def judge(trial: optuna.Trial, objective: Objective) -> tuple[keras.callbacks.Callback, Verdict]:
    """A Keras callback that reports each epoch's validation accuracy to the trial and stops
    `fit` when the pruner says so, or, for a time objective, once the target is reached; and
    the verdict it writes."""
    import keras

    verdict = Verdict()

    class Judge(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.training_seconds = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.training_seconds += time.perf_counter() - self.started
            accuracy = (logs or {}).get("val_accuracy")
            if accuracy is None or self.model is None:
                return
            if objective.reached(accuracy):
                verdict.seconds_to_target = self.training_seconds
                self.model.stop_training = True
                return
            trial.report(objective.intermediate(float(accuracy)), epoch + 1)
            if trial.should_prune():
                verdict.pruned = self.model.stop_training = True

    return Judge(), verdict


def trials_table(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, the worker that ran it, its values."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "value": None if t.value is None else round(t.value, 5),
                "epochs": t.user_attrs.get("epochs", ""),
                "worker": t.user_attrs.get("worker", ""),
                "mlflow_run": t.user_attrs.get("run_id", ""),
                **{k: v for k, v in t.params.items()},
            }
        )
    return rows


def plots(study: optuna.Study) -> dict[str, Any]:
    """Optuna's figures of the study (matplotlib): history, parallel coordinates and, with two
    or more complete trials, parameter importances (PED-ANOVA, which needs no scikit-learn)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState as State
    from optuna.visualization import matplotlib as vis

    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figures["optimization_history.png"] = vis.plot_optimization_history(study).figure
        figures["parallel_coordinate.png"] = vis.plot_parallel_coordinate(study).figure
        if len(study.get_trials(deepcopy=False, states=(State.COMPLETE,))) >= 2:
            try:
                axes = vis.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
            except (ValueError, RuntimeError):  # too few distinct values to compare
                pass
            else:
                figures["param_importances.png"] = axes.figure
    for figure in figures.values():
        figure.tight_layout()  # the knobs' names inside the picture
    return figures


def describe(study: optuna.Study) -> str:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no trials"


def params_json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)
