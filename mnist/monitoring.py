"""The monitor: the champion's reference, a window of logged predictions judged against it,
one verdict (`ok`, `drift`, `too few predictions`) and the report that explains it.

The reference is what the champion makes of a seeded sample of its own training data: MNIST
training digits it was not fitted on (its validation split, and the rows past its
`train_limit`), so that its confidence there is its confidence on new digits of the same
handwriting, not a memorised one (decision record 0064). It is built once per champion
version and kept under the tracking store's state directory. The tests themselves are in
`mnist.drift`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist import drift, durations

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

    from mnist.data import Dataset
    from mnist.datastore import Window
    from mnist.settings import MonitorSettings

OK, DRIFT, TOO_FEW = "ok", "drift", "too few predictions"
DEFAULT_SINCE = "24h"
REFERENCE_FORMAT = 2
"""Bumped when what a cached reference holds changes: older files are then rebuilt."""


def window_bounds(settings: MonitorSettings) -> tuple[datetime | None, int | None]:
    """`since` (a time) and `last` for `PredictionLog.window`: the last 24 h by default, the
    whole log when only `--last` is given."""
    since = settings.since or (None if settings.last else DEFAULT_SINCE)
    start = datetime.now(UTC) - durations.parse(since) if since else None
    return start, settings.last


def held_out_rows(train_labels: np.ndarray, params: dict[str, str]) -> np.ndarray:
    """Indices of MNIST training digits that a model trained with `params` (its run's) was not
    fitted on: its validation split and the rows past its `train_limit` (none when it learnt
    from all of them)."""
    from mnist.preprocess import stratified_split

    def number(key: str, kind: type, default: Any) -> Any:
        value = params.get(key)
        return kind(value) if value not in (None, "", "None") else default

    limit = number("train_limit", int, None)
    split, seed = number("validation_split", float, 0.1), number("seed", int, 42)
    head = np.asarray(train_labels[:limit])
    _, val = stratified_split(head, split, seed) if split > 0 else (None, np.zeros(0, np.int64))
    return np.concatenate([val, np.arange(len(head), len(train_labels))]).astype(np.int64)


def build_reference(
    model: keras.Model, data: Dataset, params: dict[str, str], size: int, seed: int = 0
) -> drift.Sample:
    """The champion's view of `size` digits it was not fitted on (a seeded sample): held-out
    training digits, or the test digits when it learnt from every training digit."""
    rows = held_out_rows(np.asarray(data.train.targets), params)
    pool = data.train.images[rows] if len(rows) else data.test.images
    rng = np.random.default_rng(seed)
    images = pool[np.sort(rng.choice(len(pool), min(size, len(pool)), replace=False))]
    seen = drift.look(model, images)
    return drift.Sample(seen.digits, seen.confidence, drift.pixel_stats(images), seen.embeddings)


def save_reference(path: Path, reference: drift.Sample) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{datetime.now(UTC).timestamp():.0f}.tmp.npz")
    arrays = {
        "format": np.array(REFERENCE_FORMAT),
        "digits": reference.digits,
        "confidence": reference.confidence,
        "embeddings": reference.embeddings,
        **{f"stat_{k}": v for k, v in reference.stats.items()},
    }
    np.savez(partial, allow_pickle=False, **arrays)
    partial.replace(path)  # whole or not at all, also with two monitors at once


def load_reference(path: Path) -> drift.Sample | None:
    """A cached reference, or None when there is none (or an unreadable or older one)."""
    try:
        with np.load(path) as f:
            if int(f["format"]) != REFERENCE_FORMAT:
                return None
            stats = {k: f[f"stat_{k}"] for k in drift.PIXEL_STATS}
            return drift.Sample(f["digits"], f["confidence"], stats, f["embeddings"])
    except (OSError, ValueError, KeyError):
        return None


def current(window: Window, model: keras.Model, version: str | None = None) -> drift.Sample:
    """A window as the tests take it: the digit and confidence of every prediction that
    `version` (the champion judged against) answered, or of all of them when it answered none
    (the outputs of an older version are not the champion's to judge); the pixel statistics
    and the champion's embeddings of the randomly sampled images only (images kept because an
    answer was unsure would bias them)."""
    seen = drift.look(model, window.sample_images)
    stats = drift.pixel_stats(window.sample_images)
    mine = window.versions.astype(str) == str(version)
    mine = mine if mine.any() else np.ones(len(window), bool)
    return drift.Sample(window.digits[mine], window.confidence[mine], stats, seen.embeddings)


@dataclass(frozen=True)
class Report:
    """The monitor's verdict on one window, with everything that led to it."""

    verdict: str
    drift: bool
    predictions: int
    sampled: int  # images in the window's random sample
    live_accuracy: float | None
    labelled: int  # trusted labels naming predictions of the window
    model: str
    version: str  # the champion judged against
    versions: dict[str, int]  # predictions per model version served in the window
    start: str | None
    end: str | None
    scores: dict[str, float | None]
    drifted: dict[str, bool]
    thresholds: dict[str, float]
    pixels: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    mlflow_link: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def line(self) -> str:
        """The verdict in one line, with what it rests on."""
        live = f"{self.live_accuracy:.3f}" if self.live_accuracy is not None else "-"
        head = f"{self.verdict}: {self.predictions} predictions ({self.sampled} sampled images)"
        if self.verdict == TOO_FEW and not self.predictions:
            return f"{TOO_FEW}: nothing was served in the window (no predictions logged)"
        if self.verdict == TOO_FEW:
            return f"{head}, fewer than the {self.thresholds['min_predictions']:.0f} needed"
        marks = ", ".join(
            f"{k} {v:.3f}{'!' if self.drifted[k] else ''}"
            for k, v in self.scores.items()
            if v is not None
        )
        return f"{head}; {marks}; live accuracy {live}"


def judge(
    window: Window,
    reference: drift.Sample,
    model: keras.Model,
    settings: MonitorSettings,
    champion: tuple[str, str],
) -> Report:
    """The verdict on `window`: `too few predictions` below `settings.min_predictions`, else
    `drift` when any test passes its threshold, else `ok`."""
    names, counts = np.unique(window.versions.astype(str), return_counts=True)
    thresholds = {
        "confidence": settings.confidence_threshold,
        "digits": settings.digits_threshold,
        "pixels": settings.pixel_threshold,
        "embeddings": settings.embedding_threshold,
        "min_predictions": float(settings.min_predictions),
        "min_images": float(settings.min_images),
    }
    report = Report(
        verdict=TOO_FEW,
        drift=False,
        predictions=len(window),
        sampled=len(window.sample_ids),
        live_accuracy=window.live_accuracy,
        labelled=len(window.labelled_ids),
        model=champion[0],
        version=champion[1],
        versions={str(n): int(c) for n, c in zip(names, counts, strict=True)},
        start=window.start.isoformat() if window.start else None,
        end=window.end.isoformat() if window.end else None,
        scores=dict.fromkeys(drift.TESTS),
        drifted=dict.fromkeys(drift.TESTS, False),
        thresholds=thresholds,
    )
    if len(window) < settings.min_predictions:
        return report
    found = drift.compare(reference, current(window, model, champion[1]), settings)
    return replace(
        report,
        verdict=DRIFT if found.drift else OK,
        drift=found.drift,
        scores=found.scores,
        drifted=found.drifted,
        pixels=found.pixels,
    )


def least_confident_ids(window: Window, count: int = 25) -> list[int]:
    """The window's least confident predictions, least first (their images, where kept, are
    what `least_confident` draws)."""
    return window.ids[np.argsort(window.confidence, kind="stable")[:count]].tolist()


def least_confident(window: Window, images: dict[int, np.ndarray]) -> Figure | None:
    """A grid of the window's least confident answers whose image was kept (`images`, by
    prediction id), each with its digit and confidence; None without any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not images:
        return None
    at = {int(pid): i for i, pid in enumerate(window.ids.tolist())}
    shown = sorted(images, key=lambda pid: float(window.confidence[at[pid]]))
    side = int(np.ceil(np.sqrt(len(shown))))
    fig, axes = plt.subplots(
        side, side, figsize=(1.7 * side, 1.9 * side), constrained_layout=True, squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, pid in zip(axes.ravel(), shown, strict=False):
        i = at[pid]
        ax.imshow(images[pid], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{window.digits[i]} ({window.confidence[i]:.0%})\n#{pid}", fontsize=6)
    fig.suptitle(f"Least confident of {len(window)} predictions", fontsize=9)
    return fig
