"""The monitor flow `mnist-monitor`: a window of served predictions judged against the
champion's reference; one MLflow run in `mnist-monitoring` per window, a Prefect artifact, the
verdict kept in the log's store, and the event `mnist.monitor.drift` or `mnist.monitor.ok`.

Deployed hourly from prefect.yaml (`flows/monitor.py:monitor_flow`, no parameters needed: the
`MNIST_MONITOR_*`, `MNIST_REGISTERED_MODEL` and `MNIST_DATASTORE` variables apply); `mnist
monitor` runs it once.
"""

from __future__ import annotations

from dataclasses import replace

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.stale_runs import tracked_run
from mnist.monitoring import Report
from mnist.settings import DatastoreSettings, MonitorSettings, RegistrySettings
from tasks import monitor as tasks


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
    with tracked_run(settings.experiment, f"monitor-{name}-v{champion.version}") as run:
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
