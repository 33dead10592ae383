"""Settings by concern, each with one default per setting, read from options and variables.

- `Recipe` (`mnist.recipe`): how to fit a model. Recipes are data: TOML files in
  `mnist/recipes/` (and in `MNIST_RECIPES_DIR`), named by `--profile`; each one sets every
  knob of `Recipe`.
- `DataSettings`: where the data comes from, how it is split and checked.
- `TrackingSettings`: where the run and its model are recorded.
- `TrainConfig`: one training run: a recipe (any knob overridable), data and tracking.
- `GateSettings`: the champion/challenger rule.  `ServeSettings`: the HTTP service and its
  prediction log.  `LabelSettings`: how many new labels call for a retraining.
  `MonitorSettings`: the monitor's window and thresholds.  `AlertSettings`: where alerts go.

A field `x_y` is the option `--x-y` and the variable `<prefix>X_Y` (`MNIST_` for training and
the registry, `MNIST_GATE_`, `MNIST_SERVE_`, `MNIST_PREDICT_`); the command line builds its
options from these classes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mnist import durations
from mnist.errors import MnistError
from mnist.recipe import Recipe, load_recipe, recipe_names, recipe_path  # noqa: F401  (where app/cli finds them)

MODEL_NAME = "mnist-cnn"
"""The registered model every command uses unless told otherwise."""
CHAMPION = "champion"
"""The alias of the version in service."""

NanPolicy = Literal["fail", "drop", "impute"]
RuntimeChoice = Literal["auto", "onnx", "keras"]
"""How a model runs: its ONNX copy with ONNX Runtime (no TensorFlow), Keras, or ONNX when the
version has a copy (`auto`)."""
RUNTIME_HELP = (
    "how the model runs: onnx (its ONNX copy with ONNX Runtime, without TensorFlow), keras, or "
    "auto (onnx when the version has an ONNX copy, else keras)"
)


def loopback(host: str) -> bool:
    """Whether binding `host` keeps a server on this machine (127.0.0.1, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _env(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="forbid", frozen=True)


class DatastoreSettings(BaseSettings):
    """Added data: the store of labelled samples from users (`mnist data`)"""

    model_config = _env("MNIST_")

    datastore: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the added-data store (default: mnist-data.db beside a "
        "SQLite MLflow store, else in the per-user state directory)",
        json_schema_extra={"metavar": "URL"},
    )


class DataSettings(DatastoreSettings):
    """Data: where it comes from, how it is split and checked"""

    model_config = _env("MNIST_")

    data_dir: Path | None = Field(
        default=None,
        description="MNIST directory or .npz (default: MNIST_DATA_DIR, else the cache)",
    )
    seed: int = Field(default=42, ge=0, description="fixes the validation split and initialisation")
    nan_policy: NanPolicy = Field(
        default="fail", description="what to do with NaN/Inf/invalid samples"
    )
    train_limit: int | None = Field(
        default=None, ge=1, description="use only the first N training images (quick runs)"
    )
    test_limit: int | None = Field(
        default=None, ge=1, description="use only the first N test images"
    )
    added_data: bool = Field(
        default=True,
        description="train on MNIST plus every active batch of added data (`mnist data list`)",
        json_schema_extra={"flag": "--added-data"},
    )
    added_share: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="share of each epoch's training images that come from added data, by "
        "repeating its samples (never less than once each); 0: each sample once",
    )


class TrackingSettings(BaseSettings):
    """Tracking: where the run and its model are recorded in MLflow"""

    model_config = _env("MNIST_")

    experiment: str = Field(default="mnist", min_length=1, description="MLflow experiment name")
    register_model: bool = Field(
        default=True,
        description="register the model as a new version",
        json_schema_extra={"flag": "--register"},
    )
    registered_model: str = Field(
        default=MODEL_NAME, min_length=1, description="registered model name in the MLflow registry"
    )


def _knobs_come_from_the_recipe(schema: dict[str, Any]) -> None:
    """In the JSON schema (Prefect's parameter form and checks), no recipe knob is required:
    the profile's recipe fills whichever is not given."""
    schema["required"] = [n for n in schema.get("required", []) if n not in Recipe.model_fields]


class WarmStartSettings(BaseSettings):
    """Warm start: fine-tune an existing model instead of training from scratch"""

    model_config = _env("MNIST_")

    init_from: str | None = Field(
        default=None,
        description="start from this model's weights (e.g. models:/mnist-cnn@champion) when its "
        "architecture is the recipe's; else train from scratch",
        json_schema_extra={"metavar": "REF"},
    )
    finetune_epochs: int = Field(default=2, ge=1, le=1000, description="epochs of a warm start")
    finetune_learning_rate: float = Field(
        default=3e-3, gt=0, le=1, description="peak learning rate of a warm start"
    )
    finetune_mnist_images: int | None = Field(
        default=20000,
        ge=1,
        description="MNIST training images a warm start rehearses (a seeded sample), beside "
        "the added data; none: all",
    )
    finetune_added_share: float = Field(
        default=0.5, ge=0, lt=1, description="--added-share of a warm start"
    )


class TrainConfig(Recipe, DataSettings, WarmStartSettings, TrackingSettings):
    """Every setting of a training run: a recipe, the data, the tracking."""

    model_config = _env("MNIST_") | {"json_schema_extra": _knobs_come_from_the_recipe}

    profile: str = Field(
        default="default",
        description="the recipe: a name (see `mnist recipes`) or a .toml file; options and "
        "MNIST_* variables given explicitly win over its values",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, data: Any) -> Any:
        """Fill every knob that was not given from the profile's recipe file."""
        if not isinstance(data, dict):
            return data
        name = str(data.get("profile", cls.model_fields["profile"].default))
        try:
            recipe = load_recipe(name)
        except ValueError as exc:
            error = PydanticCustomError("recipe", "{problem}", {"problem": str(exc)})
            details = InitErrorDetails(type=error, loc=("profile",), input=name)
            raise ValidationError.from_exception_data(cls.__name__, [details]) from None
        return {**recipe.model_dump(), **data}

    @classmethod
    def from_profile(cls, **given: Any) -> TrainConfig:
        """The settings of a run: the recipe of `profile` (default: `default`) under the
        MNIST_* variables and `given`. (`cls()` with no knobs given: a type checker cannot see
        that the recipe file supplies them.)"""
        return cls(**given)

    @property
    def recipe(self) -> Recipe:
        return Recipe(**self.model_dump(include=set(Recipe.model_fields)))

    def params(self) -> dict[str, str]:
        """The whole config, flattened to strings for MLflow params."""
        return {k: str(v) for k, v in self.model_dump().items()}

    def inputs_digest(self, *digests: str) -> str:
        """SHA-256 naming what a model is made from: the given digests (data, added-data
        snapshot, code) and every setting that changes the model; not where things are
        (paths, stores, experiment) nor the profile's name, whose knobs are all here."""
        where = {"profile", "data_dir", "datastore", "experiment", "register_model"}
        settings = self.model_dump(mode="json", exclude=where)
        text = json.dumps({"inputs": digests, "settings": settings}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


class GateSettings(BaseSettings):
    """Gate: when a challenger replaces the champion"""

    model_config = _env("MNIST_GATE_")

    floor: float = Field(
        default=0.99, ge=0, le=1, description="minimum test accuracy for promotion"
    )
    margin: float = Field(
        default=0.0, ge=0, le=1, description="how much the challenger must beat the champion by"
    )
    wait_seconds: float = Field(
        default=1800, ge=0, description="longest wait for another gate of the same model to finish"
    )
    retrain_unchanged: bool = Field(
        default=False,
        description="retrain even when the data, recipe and code are those of a registered "
        "version (otherwise the run ends early: nothing new)",
        json_schema_extra={"flag": "--retrain-unchanged"},
    )


class DaskSettings(BaseSettings):
    """Dask: where a sweep's trials and an ensemble's members run"""

    model_config = _env("MNIST_")

    dask_address: str | None = Field(
        default=None,
        pattern=r"^(tcp|tls)://[^\s/]+:\d+$",
        description="a running Dask scheduler, tcp://HOST:PORT (`dask scheduler` prints it; "
        "tls:// with Dask's certificate settings, as the stack's); default: a local cluster",
        json_schema_extra={"metavar": "ADDRESS"},
    )
    dask_workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="worker processes of the local cluster (default: one per core)",
    )


class EnsembleSettings(BaseSettings):
    """Ensemble: members trained at once on Dask, registered as one averaging model"""

    model_config = _env("MNIST_ENSEMBLE_")

    members: int = Field(default=3, ge=2, le=10, description="networks in the ensemble")
    seeds: str | None = Field(
        default=None,
        pattern=r"^\d+(,\d+)*$",
        description="the members' seeds, comma-separated, one per member (default: --seed, "
        "--seed + 1, ...)",
        json_schema_extra={"metavar": "N,N,..."},
    )

    from_models: str | None = Field(
        default=None,
        description="average these trained models instead of training members: 2 to 10 "
        "references, comma-separated (models:/NAME/VERSION, models:/NAME@ALIAS, "
        "runs:/RUN_ID/model), all of one recipe; they set the members and their seeds",
        json_schema_extra={"metavar": "REF,REF,..."},
    )

    def member_refs(self) -> list[str]:
        """`from_models` as a list; fewer than 2, more than 10 or a repeat is a ValueError."""
        refs = [r.strip() for r in (self.from_models or "").split(",") if r.strip()]
        if not 2 <= len(refs) <= 10 or len(set(refs)) != len(refs):
            raise ValueError(
                f"--from-models: give 2 to 10 different model references (got {self.from_models})"
            )
        return refs

    def member_seeds(self, seed: int) -> list[int]:
        """Each member's seed; a list of another length than `members` is a ValueError."""
        if self.seeds is None:
            return [seed + i for i in range(self.members)]
        seeds = [int(s) for s in self.seeds.split(",")]
        if len(seeds) != self.members or len(set(seeds)) != len(seeds):
            raise ValueError(
                f"--seeds: give {self.members} different seeds, one per member (got {self.seeds})"
            )
        return seeds


class SweepSettings(BaseSettings):
    """Sweep: an Optuna study over a search space, each trial a task on Dask"""

    model_config = _env("MNIST_SWEEP_")

    space: str = Field(
        default="default",
        description="the search space: a name (default, best) or a .toml file; its base "
        "recipe gives every knob it does not vary",
    )
    trials: int = Field(default=20, ge=1, le=10000, description="trials the study runs in all")
    objective: str = Field(
        default="accuracy",
        description="accuracy (the last epoch's validation accuracy, maximised) or "
        "time-to:ACCURACY (training seconds until validation accuracy reaches it, minimised)",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="the study's name (default: sweep-SPACE-TIME)",
    )
    resume: str | None = Field(
        default=None,
        min_length=1,
        description="continue study NAME where it stopped, with the settings it was started "
        "with (finished trials are not run again)",
        json_schema_extra={"metavar": "NAME"},
    )
    storage: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the study storage (default: mnist-sweeps.db beside a "
        "SQLite MLflow store, else in the per-user state directory)",
        json_schema_extra={"metavar": "URL"},
    )
    gate: bool = Field(
        default=False,
        description="judge the best trial's model against the champion, as `mnist retrain` does",
        json_schema_extra={"flag": "--gate"},
    )

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, value: str) -> str:
        from mnist.sweep_space import Objective

        return str(Objective.parse(value))


class ServeSettings(BaseSettings):
    """Serving: the HTTP API and its drawing page"""

    model_config = _env("MNIST_SERVE_")

    model: str = Field(
        default=f"models:/{MODEL_NAME}@{CHAMPION}",
        description="model to serve: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model "
        "or a path",
        json_schema_extra={"metavar": "REF"},
    )
    runtime: RuntimeChoice = Field(default="auto", description=RUNTIME_HELP)
    onnx_threads: int = Field(
        default=1,
        ge=0,
        description="ONNX Runtime's threads per model call (0: one per core); one leaves the "
        "other cores to the HTTP server (ADR 0073)",
    )
    host: str = Field(default="127.0.0.1", description="address to bind")
    admin_token: SecretStr | None = Field(
        default=None,
        description="bearer token that POST /reload requires (required when --host is not a "
        "loopback address; prefer the variable to the option, which `ps` shows)",
        json_schema_extra={"metavar": "TOKEN"},
    )
    port: int = Field(default=8000, ge=0, le=65535, description="port")
    poll_seconds: float = Field(
        default=30.0,
        ge=0,
        description="how often to check whether the alias moved; 0: only on /reload",
    )
    max_images: int = Field(default=1000, ge=1, description="most images in one request")
    batch_images: int = Field(
        default=256, ge=1, description="most images in one model call shared by concurrent requests"
    )
    batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="how long a model call waits for more requests when it has room (0: it "
        "takes what is queued; requests that arrive while the model runs form the next call)",
    )
    max_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1, description="largest request body in bytes"
    )
    feedback: bool = Field(
        default=True,
        description="accept corrected labels at POST /feedback (and on the page) into the "
        "added-data store",
        json_schema_extra={"flag": "--feedback"},
    )
    feedback_per_minute: int = Field(
        default=30,
        ge=1,
        description="most anonymous feedback samples one client address may send a minute "
        "(trusted ones, sent with the feedback token, are not limited)",
    )
    feedback_token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="bearer token (16 characters or more) that makes feedback trusted (it may "
        "train a model at once); feedback without it waits as pending for `mnist data accept`",
        json_schema_extra={"metavar": "TOKEN"},
    )
    prediction_log: bool = Field(
        default=True,
        description="record every prediction answered in the prediction log (the added-data "
        "store), for `mnist monitor` and the labelling queue",
        json_schema_extra={"flag": "--prediction-log"},
    )
    log_days: int = Field(default=30, ge=1, description="days a logged prediction is kept")
    log_images: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of predictions whose image is kept (a random sample; images of "
        "low-confidence answers are always kept)",
    )
    log_confidence: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="answers less confident than this keep their image (the labelling queue)",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="warning", description="uvicorn log level"
    )


class PredictSettings(BaseSettings):
    """Prediction: which model, and what to do with invalid inputs"""

    model_config = _env("MNIST_PREDICT_")

    model: str = Field(
        description="PATH (.keras or MLflow model dir), runs:/ID/model or models:/NAME@ALIAS",
        json_schema_extra={"metavar": "REF"},
    )
    nan_policy: NanPolicy = DataSettings.model_fields["nan_policy"]  # pyright: ignore[reportAssignmentType]  (pydantic takes a field as its default)
    runtime: RuntimeChoice = Field(default="auto", description=RUNTIME_HELP)


class RegistrySettings(BaseSettings):
    """Registry: which registered model"""

    model_config = _env("MNIST_")

    registered_model: str = Field(
        default=MODEL_NAME,
        min_length=1,
        description="registered model",
    )


class LabelSettings(BaseSettings):
    """Labels: when new trusted labels call for a retraining"""

    model_config = _env("MNIST_RETRAIN_")

    min_labels: int = Field(
        default=200,
        ge=1,
        description="new trusted labels since the champion was made that start a retraining "
        "(the event mnist.data.added marks them due)",
    )


class AlertSettings(BaseSettings):
    """Alerts: where the Prefect automations send them, and when the gate calls for one"""

    model_config = _env("MNIST_ALERT_")

    url: SecretStr | None = Field(
        default=None,
        description="where alerts go: an http(s) URL gets a JSON post (subject, body, text), "
        "any other an apprise URL (mailto://, slack://, tgram://, ...); none: no alerts",
        json_schema_extra={"metavar": "URL"},
    )
    rejections: int = Field(
        default=3,
        ge=1,
        description="challengers rejected in a row by the gate that raise an alert (read "
        "where the gate runs: the workers)",
    )


class MonitorSettings(BaseSettings):
    """Monitoring: the window of served predictions and when it has drifted"""

    model_config = _env("MNIST_MONITOR_")

    since: str | None = Field(
        default=None,
        description="the window: predictions of the last DURATION (30m, 24h, 7d); default 24h, "
        "or the whole log with --last",
        json_schema_extra={"metavar": "DURATION"},
    )

    @field_validator("since")
    @classmethod
    def _a_duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                durations.parse(value)
            except MnistError as exc:
                raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None
        return value

    last: int | None = Field(
        default=None, ge=1, description="the window: the last N predictions (of --since, if given)"
    )
    min_predictions: int = Field(
        default=200, ge=1, description="fewer predictions in the window: no verdict on drift"
    )
    min_images: int = Field(
        default=30,
        ge=2,
        description="fewer sampled images in the window: the image tests (pixels, embeddings) "
        "are left out",
    )
    reference_size: int = Field(
        default=5000,
        ge=100,
        description="digits of the champion's training data it is judged against",
    )
    confidence_threshold: float = Field(
        default=0.5, gt=0, description="drift: confidence distribution, normed Wasserstein distance"
    )
    digits_threshold: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="drift: mix of predicted digits, Jensen-Shannon distance",
    )
    pixel_threshold: float = Field(
        default=1.2, gt=0, description="drift: any pixel statistic, normed Wasserstein distance"
    )
    embedding_threshold: float = Field(
        default=0.8,
        gt=0.5,
        le=1,
        description="drift: penultimate-layer embeddings, ROC AUC of a classifier telling the "
        "window from the reference",
    )
    experiment: str = Field(
        default="mnist-monitoring", min_length=1, description="MLflow experiment of the windows"
    )
