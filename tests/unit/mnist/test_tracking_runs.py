"""`mnist.tracking.runs`: a run logs everything through its own id, tagged with the code."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mnist.tracking import Run, client


def test_a_run_logs_everything_through_its_own_id(store):
    run = Run.start("door", "a-run", {"extra": "tag"})
    run.log_params({"epochs": "2"})
    run.set_tags({"dataset_digest": "abc"})
    run.log_metrics({"loss": 0.5}, step=1)
    run.log_json({"a": 1}, "report.json")
    run.log_frame(pd.DataFrame({"x": [1, 2]}), "table.csv")
    run.end(True)
    logged = client().get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.info.experiment_id == run.experiment_id
    assert logged.data.params == {"epochs": "2"}
    assert logged.data.tags["extra"] == "tag" and logged.data.tags["dataset_digest"] == "abc"
    assert logged.data.tags["git_commit"] == run.code_version
    assert logged.data.metrics == {"loss": 0.5}
    report = Path(client().download_artifacts(run.run_id, "report.json"))
    assert json.loads(report.read_text()) == {"a": 1}
    assert (Path(run.artifact_location("table.csv"))).read_text() == "x\n1\n2\n"
    assert run.run_id in run.link() and store in run.link()


def test_runs_logging_the_same_new_dataset_at_once_all_record_it(store):
    """MLflow's SQL store looks a dataset up, then inserts it; runs of one experiment that log
    the same new dataset at the same moment used to lose to a UNIQUE constraint (CI, two
    concurrent retrainings). Each round logs a new dataset from four threads at once."""
    import threading

    import numpy as np

    from mnist.tracking.runs import Input

    runs = [Run.start("race", f"run-{i}", {}) for i in range(4)]
    errors: list[BaseException] = []
    for round_ in range(10):
        data = Input(
            f"set-{round_}", np.zeros((2, 2)), np.zeros(2), "here", f"{round_:064x}", "training"
        )
        start = threading.Barrier(len(runs))

        def log(run: Run, data: Input = data, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                run.log_inputs([data])
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=log, args=(run,)) for run in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    for run in runs:
        names = {i.dataset.name for i in client().get_run(run.run_id).inputs.dataset_inputs}
        assert names == {f"set-{r}" for r in range(10)}
