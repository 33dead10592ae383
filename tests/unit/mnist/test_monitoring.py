"""The monitor's domain: pixel statistics, embeddings, the held-out reference, the drift tests
and the verdict, on small synthetic data (no servers)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

from mnist import drift, durations, monitoring
from mnist.datastore import Window
from mnist.errors import MnistError
from mnist.preprocess import stratified_split
from mnist.settings import MonitorSettings


def _bar(x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    image = np.zeros((28, 28), np.uint8)
    image[y0:y1, x0:x1] = 255
    return image


def test_pixel_stats_measure_position_size_ink_and_slant():
    stats = drift.pixel_stats(np.stack([_bar(10, 14, 4, 24), np.zeros((28, 28), np.uint8)]))
    assert stats["centroid_x"][0] == pytest.approx(11.5)
    assert stats["centroid_y"][0] == pytest.approx(13.5)
    assert (stats["width"][0], stats["height"][0]) == (4, 20)
    assert stats["ink"][0] == pytest.approx(80 / 784)
    assert stats["width"][1] == 0 and stats["intensity"][1] == 0  # a blank image is no error
    slanted = np.zeros((28, 28), np.uint8)
    for row in range(4, 24):  # leaning right towards the top, as most handwriting does
        slanted[row, 18 - row // 2 : 21 - row // 2] = 255
    lean, mirrored = drift.pixel_stats(np.stack([slanted, slanted[:, ::-1]]))["slant"]
    assert lean == pytest.approx(-mirrored) and abs(lean) > 0.3


def test_embeddings_come_from_the_layer_before_the_output():
    from mnist.models import build, for_raw_pixels

    model = for_raw_pixels(build("small"))
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    seen = drift.look(model, images)
    probabilities = np.asarray(model.predict_on_batch(images.astype(np.float32)))
    assert seen.embeddings.shape == (5, 256)
    assert (seen.digits == probabilities.argmax(axis=1)).all()
    assert seen.confidence == pytest.approx(probabilities.max(axis=1), abs=1e-5)


def test_the_reference_is_drawn_from_digits_the_model_was_not_fitted_on():
    labels = np.tile(np.arange(10), 100)
    params = {"train_limit": "600", "validation_split": "0.1", "seed": "7"}
    rows = monitoring.held_out_rows(labels, params)
    fitted, val = stratified_split(labels[:600], 0.1, 7)
    assert set(rows) == set(val) | set(range(600, 1000))
    assert not set(rows) & set(fitted)
    no_hold_out = monitoring.held_out_rows(
        labels, {"validation_split": "0.0", "train_limit": "None"}
    )
    assert len(no_hold_out) == 0  # the reference then comes from the test digits


def test_a_model_fitted_on_every_training_digit_is_referenced_on_the_test_digits():
    from mnist.data import Dataset, Split
    from mnist.models import build, for_raw_pixels

    labels = np.arange(40) % 10
    train = Split(np.stack([_bar(2, 6, 4, 24)] * 40), labels, "train")  # narrow, all fitted on
    test = Split(np.stack([_bar(8, 20, 4, 24)] * 40), labels, "test")  # wide, never fitted on
    data, model = Dataset(train, test), for_raw_pixels(build("small"))
    widths = {
        split: set(monitoring.build_reference(model, data, params, 10).stats["width"])
        for split, params in [
            ("0.0", {"validation_split": "0.0"}),
            ("0.5", {"validation_split": "0.5"}),
        ]
    }
    assert widths == {"0.0": {12.0}, "0.5": {4.0}}


def test_a_cached_reference_is_read_back_and_an_older_format_rebuilt(tmp_path):
    ref = _sample(np.random.default_rng(0), 50)
    path = tmp_path / "ref.npz"
    monitoring.save_reference(path, ref)
    back = monitoring.load_reference(path)
    assert back is not None and (back.embeddings == ref.embeddings).all()
    assert back.stats["slant"] == pytest.approx(ref.stats["slant"])
    np.savez(path, format=np.array(0))
    assert monitoring.load_reference(path) is None
    assert monitoring.load_reference(tmp_path / "missing.npz") is None


def test_durations_and_the_default_window():
    assert durations.parse("24h") == timedelta(hours=24)
    assert durations.parse(" 30 M") == timedelta(minutes=30)
    for bad in ("yesterday", "0h", "7"):
        with pytest.raises(MnistError, match="expected a duration such as 30m"):
            durations.parse(bad)
    since, last = monitoring.window_bounds(MonitorSettings())
    assert since is not None and last is None
    assert monitoring.window_bounds(MonitorSettings(last=10)) == (None, 10)


def _sample(rng: np.random.Generator, n: int, shift: float = 0.0, m: int | None = None):
    m = n if m is None else m
    stats = {k: rng.normal(shift if k == "centroid_x" else 0, 1, m) for k in drift.PIXEL_STATS}
    confidence = np.clip(rng.normal(0.97 - shift / 10, 0.03, n), 0, 1)
    digits = rng.integers(0, 3 if shift else 10, n)  # a shift also skews the digit mix
    return drift.Sample(digits, confidence, stats, rng.normal(shift, 1, (m, 8)).astype(np.float32))


def test_same_traffic_is_ok_and_shifted_traffic_drifts():
    rng, settings = np.random.default_rng(1), MonitorSettings()
    ref = _sample(rng, 2000)
    same = drift.compare(ref, _sample(rng, 500, m=50), settings)
    assert not same.drift, same.scores
    shifted = drift.compare(ref, _sample(rng, 500, shift=3.0, m=50), settings)
    assert shifted.drifted == dict.fromkeys(drift.TESTS, True), shifted.scores
    assert shifted.pixels["centroid_x"] > settings.pixel_threshold
    unsampled = drift.compare(ref, _sample(rng, 500, m=settings.min_images - 1), settings)
    assert unsampled.scores["pixels"] is None and unsampled.scores["embeddings"] is None


def _window(n: int, m: int, labelled: int = 0) -> Window:
    rng = np.random.default_rng(2)
    ids = np.arange(n, dtype=np.int64) + (1 << 40)
    digits = rng.integers(0, 10, n).astype(np.int8)
    return Window(
        ids=ids,
        at=np.zeros(n, "datetime64[ms]"),
        versions=np.array(["3"] * n, object),
        digits=digits,
        confidence=np.full(n, 0.99, np.float32),
        runner_up=digits,
        runner_up_p=np.full(n, 0.01, np.float32),
        sample_ids=ids[:m],
        sample_images=np.zeros((m, 28, 28), np.uint8),
        labelled_ids=ids[:labelled],
        labels=digits[:labelled],
    )


def test_too_few_predictions_is_a_verdict_of_its_own():
    settings = MonitorSettings(min_predictions=100)
    ref = _sample(np.random.default_rng(3), 200)
    report = monitoring.judge(_window(99, 5, labelled=4), ref, None, settings, ("m", "3"))  # pyright: ignore[reportArgumentType]  (no model needed)
    assert report.verdict == monitoring.TOO_FEW and report.drift is False
    assert report.live_accuracy == 1.0 and report.versions == {"3": 99}
    out = json.loads(report.to_json())
    for key in ("verdict", "drift", "predictions", "live_accuracy", "scores"):
        assert key in out
    assert "fewer than the 100" in report.line()


def test_only_the_champions_own_answers_are_judged_for_confidence_and_digits():
    from dataclasses import replace

    from mnist.models import build, for_raw_pixels

    window = _window(10, 2)
    older = np.array(["2"] * 6 + ["3"] * 4, object)  # v3 promoted mid-window
    window = replace(window, versions=older, confidence=np.linspace(0.1, 1, 10, dtype=np.float32))
    model = for_raw_pixels(build("small"))
    mine = monitoring.current(window, model, "3")
    assert mine.confidence.tolist() == window.confidence[6:].tolist()
    assert (mine.digits == window.digits[6:]).all() and len(mine.embeddings) == 2
    anyone = monitoring.current(window, model, "7")  # it answered none: all of them
    assert len(anyone.confidence) == 10
