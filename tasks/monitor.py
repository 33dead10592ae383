"""The monitor's tasks: the champion and its reference, the window, the verdict, and what
each window leaves behind (an MLflow run's metrics and files, a row in the log's store, a
Prefect event). The logic is in `mnist.monitoring` and `mnist.drift`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import drift, monitoring, registry, tracking
from mnist.datastore import PredictionLog, Store
from mnist.datastore.engines import safe_url, sqlite_file
from mnist.errors import MnistError, first_line
from mnist.event_names import MONITOR
from mnist.settings import MonitorSettings
from mnist.tracking import Run

if TYPE_CHECKING:
    import keras

    from mnist.datastore import Window

"""Events `mnist.monitor.drift` and `mnist.monitor.ok`, about `mnist.monitor.<model>`."""


@task(name="champion", task_run_name="champion-{name}", cache_policy=NO_CACHE)
def champion(name: str) -> registry.Version:
    """The version the monitor judges the traffic against: the champion's."""
    found = registry.champion(name)
    if found is None:
        raise MnistError(
            f"no reference to judge the traffic against: model {name!r} has no champion in "
            f"{tracking.store_uri()} (train one: mnist retrain)"
        )
    return found


@task(name="read-window", cache_policy=NO_CACHE)
def read_window(url: str | None, settings: MonitorSettings) -> Window:
    """The window of logged predictions (`--since`, `--last`); one line when the store is not
    there. An empty window is no error: nothing was served (the verdict: too few)."""
    store = Store(url) if url is None or not _missing(url) else None
    if store is None:
        raise MnistError(
            f"no prediction log: {safe_url(str(url))} does not exist (mnist serve writes it)"
        )
    since, last = monitoring.window_bounds(settings)
    window = PredictionLog(store).window(since=since, last=last)
    if not len(window):
        span = f"since {since:%Y-%m-%d %H:%M} UTC" if since else "at all"
        get_run_logger().warning(
            "no predictions in the window: the log in %s has none %s", store, span
        )
        return window
    get_run_logger().info(
        "%d predictions from %s to %s, %d sampled images, %d labelled",
        len(window),
        window.start,
        window.end,
        len(window.sample_ids),
        len(window.labelled_ids),
    )
    return window


def _missing(url: str) -> bool:
    path = sqlite_file(url)
    return path is not None and not path.is_file()


def _cache(version: registry.Version, size: int) -> Path:
    return tracking.state_dir() / "monitor" / f"{version.name}-v{version.version}-{size}.npz"


@task(name="reference", task_run_name="reference-v{version.version}", cache_policy=NO_CACHE)
def reference(
    version: registry.Version, settings: MonitorSettings
) -> tuple[keras.Model, drift.Sample]:
    """The champion's model, and its reference: read from the cache beside the tracking store,
    or built from digits it was not fitted on (`monitoring.build_reference`) and cached."""
    from mnist import data

    logger = get_run_logger()
    model = tracking.load_model(version.uri)
    path = _cache(version, settings.reference_size)
    if (found := monitoring.load_reference(path)) is not None:
        logger.info(
            "reference of v%s: %d digits, from %s", version.version, len(found.digits), path
        )
        return model, found
    run = tracking.call(tracking.client().get_run, version.run_id, missing="its run is gone")
    params = run.data.params
    data_dir = params.get("data_dir")
    dataset = data.load(Path(data_dir) if data_dir and Path(data_dir).exists() else None)
    built = monitoring.build_reference(model, dataset, params, settings.reference_size)
    try:
        monitoring.save_reference(path, built)
    except OSError as exc:  # a read-only state directory: built again next time
        logger.warning("reference not cached at %s: %s", path, first_line(exc))
    unseen = len(built.digits)
    logger.info("reference of v%s: %d digits it was not fitted on", version.version, unseen)
    return model, built


@task(name="judge", cache_policy=NO_CACHE)
def judge(
    window: Window,
    ref: drift.Sample,
    model: keras.Model,
    settings: MonitorSettings,
    version: registry.Version,
) -> monitoring.Report:
    """The verdict on the window (`mnist.monitoring.judge`)."""
    report = monitoring.judge(window, ref, model, settings, (version.name, version.version))
    get_run_logger().info("%s", report.line())
    return report


@task(name="log-window", cache_policy=NO_CACHE)
def log_window(
    run: Run,
    report: monitoring.Report,
    window: Window,
    ref: drift.Sample,
    model: keras.Model,
    settings: MonitorSettings,
    store_url: str | None,
) -> None:
    """The window's MLflow run: its metrics, the Evidently report (HTML), the least confident
    inputs (PNG) and the whole report (JSON)."""
    metrics = {
        "predictions": float(report.predictions),
        "sampled_images": float(report.sampled),
        "labelled": float(report.labelled),
        "drift": float(report.drift),
        **{f"score_{k}": v for k, v in report.scores.items() if v is not None},
        **{f"pixel_{k}": v for k, v in report.pixels.items()},
    }
    if report.live_accuracy is not None:
        metrics["live_accuracy"] = report.live_accuracy
    run.log_metrics(metrics)
    run.log_params(
        {
            "since": str(settings.since),
            "last": str(settings.last),
            "champion": f"{report.model} v{report.version}",
            **{f"threshold_{k}": str(v) for k, v in report.thresholds.items()},
        }
    )
    run.set_tags(
        {
            "verdict": report.verdict,
            "window_start": str(report.start),
            "window_end": str(report.end),
        }
    )
    run.log_json(report.to_dict(), "report.json")
    if report.verdict != monitoring.TOO_FEW:
        html = drift.html_report(ref, monitoring.current(window, model, report.version), settings)
        tracking.call(tracking.client().log_text, run.run_id, html, "evidently_report.html")
    if not len(window):
        return
    log = PredictionLog(Store(store_url))
    figure = monitoring.least_confident(window, log.images(monitoring.least_confident_ids(window)))
    if figure is not None:
        run.log_figures({"least_confident.png": figure}, "inputs")


@task(name="record-window", cache_policy=NO_CACHE)
def record(store_url: str | None, report: monitoring.Report, window: Window) -> int | None:
    """Keep the verdict in the log's store (the labelling queue reads drifted windows); an
    empty window is not kept."""
    if window.start is None or window.end is None:
        return None
    return PredictionLog(Store(store_url)).record(
        window.start,
        window.end,
        report.verdict,
        report.drift,
        report.predictions,
        report.live_accuracy,
        report.run_id,
    )


@task(name="emit-verdict", cache_policy=NO_CACHE)
def emit(report: monitoring.Report) -> str | None:
    """The event `mnist.monitor.drift` or `mnist.monitor.ok` with the scores (none for a
    window with too few predictions); its name, or None. A failure to send is logged."""
    from prefect.events import emit_event

    if report.verdict == monitoring.TOO_FEW:
        return None
    name = f"{MONITOR}.{report.verdict}"
    payload = {
        "verdict": report.verdict,
        "predictions": report.predictions,
        "sampled": report.sampled,
        "live_accuracy": report.live_accuracy,
        "version": report.version,
        "scores": report.scores,
        "drifted": report.drifted,
        "run_id": report.run_id,
        "start": report.start,
        "end": report.end,
    }
    resource = {"prefect.resource.id": f"{MONITOR}.{report.model}", "mnist.model": report.model}
    try:
        emit_event(name, resource=resource, payload=payload)
    except Exception as exc:  # the events client: the verdict is already recorded
        get_run_logger().warning("event %s not sent: %s", name, first_line(exc))
        return None
    return name
