"""The monitor flow on real MLflow, Prefect and SQL stores: the suite's full-MNIST model, as
champion, judges logged traffic (tests/system/test_loop.py does the same with a weaker champion
trained on a subset). MNIST test digits are `ok` window after window, mirror-written ones
(`tests.sources`) `drift`; each window leaves an MLflow run with its files, a Prefect
artifact and a row in the store; what cannot be judged is one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from flows.monitor import monitor_flow
from mnist import monitoring, registry, tracking
from mnist.datastore import Logged, PredictionLog, Store, new_ids
from mnist.errors import MnistError
from mnist.evaluation import predict_proba
from mnist.settings import MonitorSettings
from tests.sources import mirror_writing

pytestmark = pytest.mark.slow
NAME = "monitor-test"
WINDOW = 400


@pytest.fixture(scope="module")
def champion(full_run) -> registry.Version:
    """The suite's full-MNIST model (no training of its own), champion of `NAME`."""
    _, result = full_run
    version = registry.register(result.model_uri, result.run_id, {}, NAME)
    return registry.promote(version.version, NAME, "the monitor's tests")


def _log(url: str, model, images: np.ndarray, share: float = 0.1, seed: int = 0) -> None:
    """Log the champion's answers as `mnist serve` does: images of a random share and of
    the unsure answers kept."""
    p = predict_proba(model, images.astype(np.float32))
    order = np.argsort(p, axis=1)
    rng, now = np.random.default_rng(seed), datetime.now(UTC) - timedelta(seconds=2)
    rows = []
    for i, pid in enumerate(new_ids(len(images), now)):
        sampled = bool(rng.random() < share)
        top, second = int(order[i, -1]), int(order[i, -2])
        keep = sampled or p[i, top] < 0.9
        image = images[i].tobytes() if keep else None
        rows.append(
            Logged(
                pid, now, "1", top, float(p[i, top]), second, float(p[i, second]), image, sampled
            )
        )
    PredictionLog(Store(url)).write(rows)


def test_mnist_traffic_is_ok_and_mirror_writing_drifts(champion, mnist_data, tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    model = tracking.load_model(champion.uri)
    settings = MonitorSettings(last=WINDOW)
    for start in range(0, 2 * WINDOW, WINDOW):
        _log(url, model, mnist_data.test.images[start : start + WINDOW], seed=start)
        report = monitor_flow(settings, NAME, url)
        assert report.verdict == monitoring.OK, report.line()
    mirrored, _ = mirror_writing(mnist_data, 0, WINDOW)
    _log(url, model, mirrored)
    report = monitor_flow(settings, NAME, url)
    assert report.verdict == monitoring.DRIFT and report.drift, report.line()
    assert report.drifted["confidence"] and report.predictions == WINDOW

    run = tracking.client().get_run(str(report.run_id))
    assert run.info.status == "FINISHED"
    assert run.data.metrics["drift"] == 1 and run.data.tags["verdict"] == "drift"
    files = {f.path for f in tracking.client().list_artifacts(run.info.run_id)}
    assert {"report.json", "evidently_report.html", "inputs"} <= files
    assert [w["verdict"] for w in PredictionLog(Store(url)).windows()] == ["drift", "ok", "ok"]


def test_what_cannot_be_judged_is_one_line(champion, tmp_path):
    settings = MonitorSettings(last=WINDOW)
    missing = f"sqlite:///{tmp_path / 'nothing-here.db'}"
    with pytest.raises(MnistError, match="no prediction log"):
        monitor_flow(settings, NAME, missing)
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(empty)
    nothing = monitor_flow(settings, NAME, empty)  # a quiet hour: no failed run, no alert
    assert nothing.verdict == monitoring.TOO_FEW and nothing.predictions == 0
    assert nothing.line().startswith("too few predictions: nothing was served")
    with pytest.raises(MnistError, match="has no champion"):
        monitor_flow(settings, "no-such-model", empty)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database" * 100)
    with pytest.raises(MnistError, match=r"corrupt\.db") as found:
        monitor_flow(settings, NAME, f"sqlite:///{corrupt}")
    assert "\n" not in str(found.value)
