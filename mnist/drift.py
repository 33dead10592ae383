"""What the monitor compares: a model's view of images (its digits, confidences and
penultimate-layer embeddings), a few pixel statistics of each image, and the Evidently tests
that tell whether a window of traffic still looks like the reference.

Four tests, each an effect size against a threshold (decision record 0064): the embeddings of
the sampled images (Evidently's `EmbeddingsDrift`, distance between mean embeddings), the pixel
statistics (Evidently's column drift, Wasserstein distance), the mix of predicted digits
(Jensen-Shannon distance) and the confidence distribution (Wasserstein distance). Evidently is
imported only when the tests run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist.errors import MnistError

if TYPE_CHECKING:
    import keras
    import pandas as pd

    from mnist.settings import MonitorSettings

PIXEL_STATS = ("intensity", "ink", "centroid_x", "centroid_y", "width", "height", "slant")
"""Per image: mean intensity (0-1), share of inked pixels (> 127), centre of mass (pixels),
the inked bounding box (pixels), and the slant (the second-moment skew mu11 / mu02, which a
mirror-written digit flips)."""
EMBEDDINGS = "penultimate"


def pixel_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    """The `PIXEL_STATS` of uint8 images (N, 28, 28), each a float64 array (N,)."""
    x = np.asarray(images, np.float64).reshape(-1, 28, 28) / 255.0
    mass = x.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    grid = np.arange(28, dtype=np.float64)
    cx = (x.sum(axis=1) * grid).sum(axis=1) / safe
    cy = (x.sum(axis=2) * grid).sum(axis=1) / safe
    dx, dy = grid[None, :] - cx[:, None], grid[None, :] - cy[:, None]
    mu11 = (x * dy[:, :, None] * dx[:, None, :]).sum(axis=(1, 2)) / safe
    mu02 = (x * dy[:, :, None] ** 2).sum(axis=(1, 2)) / safe
    inked = x > 0.5
    cols, rows = np.asarray(inked.any(axis=1)), np.asarray(inked.any(axis=2))

    def extent(hit: np.ndarray) -> np.ndarray:
        first = hit.argmax(axis=1)
        last = 27 - hit[:, ::-1].argmax(axis=1)
        return np.where(hit.any(axis=1), last - first + 1, 0).astype(np.float64)

    return {
        "intensity": x.mean(axis=(1, 2)),
        "ink": inked.mean(axis=(1, 2)),
        "centroid_x": np.where(mass > 0, cx, 13.5),
        "centroid_y": np.where(mass > 0, cy, 13.5),
        "width": extent(cols),
        "height": extent(rows),
        "slant": np.where(mu02 > 0, mu11 / np.where(mu02 > 0, mu02, 1.0), 0.0),
    }


def _flat(layers: list[Any]) -> list[Any]:
    """The layers of nested Sequential models, in order (a wrapper, augmentation, the net)."""
    import keras

    out = []
    for layer in layers:
        if isinstance(layer, keras.Sequential):
            out += _flat(list(layer.layers))
        else:
            out.append(layer)
    return out


def embedder(model: keras.Model) -> keras.Model:
    """A model of the same weights giving (embeddings, probabilities) for raw pixels: the input
    of the last layer (the penultimate layer's output) and the last layer's output. For an
    ensemble (`mnist.ensemble`): its members' embeddings side by side, their mean output."""
    import keras

    layers = _flat(list(model.layers)) if isinstance(model, keras.Sequential) else []
    if not layers:
        raise _unmonitorable(model)
    pixels = keras.Input(tuple(model.input_shape[1:]))
    x = pixels
    for layer in layers[:-1]:
        x = _call(layer, x)
    members = [m for m in getattr(layers[-1], "layers", []) if isinstance(m, keras.Sequential)]
    if isinstance(layers[-1], keras.layers.Average) or not members:
        embedding, probabilities = _chain(model, layers[-1:], x)
    else:
        parts = [_chain(model, _flat(list(m.layers)), x) for m in members]
        embedding = keras.layers.Concatenate()([e for e, _ in parts])
        probabilities = keras.layers.Average()([p for _, p in parts])
    return keras.Model(pixels, [embedding, probabilities], name=f"{model.name}_embedder")


def _chain(model: keras.Model, layers: list[Any], x: Any) -> tuple[Any, Any]:
    """(the input of the last of `layers`, its output) for `x` run through them: the last one
    must be the dense output layer."""
    import keras

    if not isinstance(layers[-1], keras.layers.Dense):
        raise _unmonitorable(model)
    for layer in layers[:-1]:
        x = _call(layer, x)
    return x, layers[-1](x)


def _call(layer: Any, x: Any) -> Any:
    return layer(x, training=False) if _random(layer) else layer(x)


def _unmonitorable(model: keras.Model) -> MnistError:
    return MnistError(
        f"model {model.name!r}: no dense output layer to take embeddings before; only "
        "models of mnist-pipeline's architectures can be monitored"
    )


def _random(layer: Any) -> bool:
    """Layers that act only in training (augmentation, dropout) take `training`."""
    return "training" in getattr(layer, "_call_signature_parameters", [])


@dataclass(frozen=True)
class Seen:
    """What a model made of some images: digits, confidences, runner-ups and embeddings."""

    digits: np.ndarray  # int8 (N,)
    confidence: np.ndarray  # float32 (N,)
    embeddings: np.ndarray  # float32 (N, D)


def look(model: keras.Model, images: np.ndarray, chunk: int = 2048) -> Seen:
    """Run `images` (uint8 or raw float pixels (N, 28, 28)) through the embedder of `model`."""
    net = embedder(model)
    x = np.asarray(images, np.float32)
    emb, prob = [], []
    for i in range(0, len(x), chunk):
        e, p = net.predict_on_batch(x[i : i + chunk])
        emb.append(np.asarray(e, np.float32).reshape(len(e), -1))
        prob.append(np.asarray(p, np.float32))
    if not emb:
        width = int(np.prod(net.outputs[0].shape[1:]))
        return Seen(np.zeros(0, np.int8), np.zeros(0, np.float32), np.zeros((0, width), np.float32))
    probabilities = np.concatenate(prob)
    return Seen(
        probabilities.argmax(axis=1).astype(np.int8),
        probabilities.max(axis=1).astype(np.float32),
        np.concatenate(emb),
    )


def frame(stats: dict[str, np.ndarray], embeddings: np.ndarray | None = None) -> pd.DataFrame:
    """A table of pixel statistics (and embedding columns `e0`..), for Evidently."""
    import pandas as pd

    columns: dict[str, Any] = dict(stats)
    if embeddings is not None:
        columns |= {f"e{i}": embeddings[:, i] for i in range(embeddings.shape[1])}
    return pd.DataFrame(columns)


@dataclass(frozen=True)
class Sample:
    """Digits and confidences of every prediction, and the pixel statistics and embeddings of
    an unbiased sample of their images (the reference, or a window's random sample)."""

    digits: np.ndarray  # int (n,)
    confidence: np.ndarray  # float (n,)
    stats: dict[str, np.ndarray]  # PIXEL_STATS, each (m,)
    embeddings: np.ndarray  # float32 (m, D)


TESTS = ("confidence", "digits", "pixels", "embeddings")
"""The drift tests, in the order the report shows them."""


@dataclass(frozen=True)
class Scores:
    """Each test's score (None: left out, too few sampled images), whether it passed its
    threshold, and each pixel statistic's own score."""

    scores: dict[str, float | None]
    drifted: dict[str, bool]
    pixels: dict[str, float]

    @property
    def drift(self) -> bool:
        return any(self.drifted.values())


def _stattest(reference: pd.Series, current: pd.Series, kind: str, method: str) -> float:
    from evidently import ColumnType
    from evidently.legacy.calculations.stattests import get_stattest

    column = ColumnType(kind)
    test = get_stattest(reference, current, column, method)
    return float(test(reference, current, column, None).drift_score)


def compare(reference: Sample, current: Sample, settings: MonitorSettings) -> Scores:
    """Evidently's tests of `current` against `reference`: the confidence distribution and
    the digit mix over every prediction; the pixel statistics and the embeddings over the
    sampled images, when there are at least `settings.min_images` of them."""
    import pandas as pd
    from evidently.metrics.embeddings import ModelDriftMethod

    conf = _stattest(
        pd.Series(reference.confidence, dtype=float),
        pd.Series(current.confidence, dtype=float),
        "num",
        "wasserstein",
    )
    digits = _stattest(
        pd.Series(reference.digits, dtype=int),
        pd.Series(current.digits, dtype=int),
        "cat",
        "jensenshannon",
    )
    scores: dict[str, float | None] = {"confidence": conf, "digits": digits}
    pixels: dict[str, float] = {}
    if len(current.embeddings) >= settings.min_images:
        pixels = {
            k: _stattest(
                pd.Series(reference.stats[k]), pd.Series(current.stats[k]), "num", "wasserstein"
            )
            for k in PIXEL_STATS
        }
        scores["pixels"] = max(pixels.values())
        # Evidently's pydantic-v1 models hide their fields and `__call__` from type checkers
        method: Any = ModelDriftMethod(threshold=settings.embedding_threshold)  # pyright: ignore[reportCallIssue]
        auc, _, _ = method(
            pd.DataFrame(current.embeddings.astype(np.float64)),
            pd.DataFrame(reference.embeddings.astype(np.float64)),
        )
        scores["embeddings"] = float(auc)
    else:
        scores |= {"pixels": None, "embeddings": None}
    limits = {
        "confidence": settings.confidence_threshold,
        "digits": settings.digits_threshold,
        "pixels": settings.pixel_threshold,
        "embeddings": settings.embedding_threshold,
    }
    drifted = {k: (v is not None and v >= limits[k]) for k, v in scores.items()}
    return Scores(scores, drifted, pixels)


def html_report(reference: Sample, current: Sample, settings: MonitorSettings) -> str:
    """Evidently's HTML report: the drift of the confidence, the digit mix and (with enough
    sampled images) each pixel statistic, by the methods and thresholds `compare` uses. The
    embeddings' score is in the run's metrics: Evidently's embedding widget fits a t-SNE of
    2,500 points, about 30 s on two cores."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    def predictions(s: Sample) -> pd.DataFrame:
        return pd.DataFrame(
            {"confidence": s.confidence.astype(float), "digit": s.digits.astype(int)}
        )

    columns: dict[str, Any] = {}
    metrics: list[Any] = [
        ValueDrift(
            column="confidence", method="wasserstein", threshold=settings.confidence_threshold
        ),
        ValueDrift(column="digit", method="jensenshannon", threshold=settings.digits_threshold),
    ]
    ref, cur = predictions(reference), predictions(current)
    if len(current.embeddings) >= settings.min_images:
        # the images are fewer than the predictions: their statistics go in as columns of
        # equal length, the rest of each column empty (Evidently drops missing values)
        ref = pd.concat([ref, frame(reference.stats)], axis=1)
        cur = pd.concat([cur, frame(current.stats)], axis=1)
        columns["stats"] = list(PIXEL_STATS)
        metrics += [
            ValueDrift(column=k, method="wasserstein", threshold=settings.pixel_threshold)
            for k in PIXEL_STATS
        ]
    definition = DataDefinition(
        numerical_columns=["confidence", *columns.get("stats", [])],
        categorical_columns=["digit"],
    )
    snapshot = Report(metrics).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    return snapshot.get_html_str(as_iframe=False)
