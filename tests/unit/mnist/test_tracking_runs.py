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
