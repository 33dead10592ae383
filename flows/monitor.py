"""The monitor flow `mnist-monitor`: a window of served predictions judged against the
champion's reference; one MLflow run in `mnist-monitoring` per window, a Prefect artifact, the
verdict kept in the log's store, and the event `mnist.monitor.drift` or `mnist.monitor.ok`.

Deployed hourly from prefect.yaml (`flows/monitor.py:monitor_flow`, no parameters needed: the
`MNIST_MONITOR_*`, `MNIST_REGISTERED_MODEL` and `MNIST_DATASTORE` variables apply); `mnist
monitor` runs it once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.stale_runs import close_stale_runs
from mnist.errors import first_line
from mnist.monitoring import Report
from mnist.settings import DatastoreSettings, MonitorSettings, RegistrySettings
from mnist.tracking import Run
from tasks import monitor as tasks


@contextmanager
def monitor_run(experiment: str, name: str) -> Iterator[Run]:
    """The window's MLflow run: FINISHED if the body succeeds, else FAILED. Runs that killed
    processes left RUNNING are closed first (a killed monitor's among them)."""
    logger = get_run_logger()
    try:
        stale, crashed = close_stale_runs()
    except Exception as exc:  # tidying up after others must not stop this run
        logger.warning("could not close runs left open by killed processes: %s", first_line(exc))
    else:
        if stale:
            logger.warning(
                "closed %d run(s) left open by killed processes (and %d Prefect flow run(s))",
                len(stale),
                len(crashed),
            )
    run = Run.start(experiment, name, {"prefect.flow_run_id": str(flow_run.id or "")})
    ok = False
    try:
        yield run
        ok = True
    finally:
        run.end(ok)


def summary(report: Report) -> str:
    """The artifact: the verdict, each test's score against its threshold, the MLflow run."""
    rows = "\n".join(
        f"| {test} | {'-' if score is None else f'{score:.3f}'} | "
        f"{report.thresholds[test]:g} | {'**drift**' if report.drifted[test] else 'ok'} |"
        for test, score in report.scores.items()
    )
    live = "-" if report.live_accuracy is None else f"{report.live_accuracy:.3f}"
    return f"""# Monitor: **{report.verdict}**

{report.model} v{report.version}, window {report.start} to {report.end}:
{report.predictions} predictions, {report.sampled} sampled images, live accuracy {live}
({report.labelled} labelled).

| test | score | threshold | |
| --- | --- | --- | --- |
{rows}

MLflow run: {report.mlflow_link}
"""


@flow(name="mnist-monitor", flow_run_name=lambda: "monitor")
def monitor_flow(
    settings: MonitorSettings | None = None,
    registered_model: str | None = None,
    datastore: str | None = None,
) -> Report:
    """Judge the window of served predictions against the champion's reference."""
    settings = settings or MonitorSettings()
    name = registered_model or RegistrySettings().registered_model
    store = datastore or DatastoreSettings().datastore
    champion = tasks.champion(name)
    window = tasks.read_window(store, settings)
    with monitor_run(settings.experiment, f"monitor-{name}-v{champion.version}") as run:
        model, reference = tasks.reference(champion, settings)
        report = tasks.judge(window, reference, model, settings, champion)
        report = replace(report, run_id=run.run_id, mlflow_link=run.link())
        tasks.log_window(run, report, window, reference, model, settings, store)
        tasks.record(store, report, window)
    create_markdown_artifact(
        key="mnist-monitor",
        markdown=summary(report),
        description=f"The monitor's verdict on {report.predictions} predictions",
    )
    tasks.emit(report)
    return report
