"""The monitor flow's Prefect artifact: each test's score against its threshold, the link."""

from __future__ import annotations

from flows.monitor import summary
from mnist.monitoring import Report


def test_the_artifact_marks_the_tests_that_drifted():
    report = Report(
        verdict="drift",
        drift=True,
        predictions=500,
        sampled=48,
        live_accuracy=None,
        labelled=0,
        model="mnist-cnn",
        version="4",
        versions={"4": 500},
        start="2026-01-01T00:00:00+00:00",
        end="2026-01-01T01:00:00+00:00",
        scores={"confidence": 3.4, "digits": 0.05, "pixels": None, "embeddings": None},
        drifted={"confidence": True, "digits": False, "pixels": False, "embeddings": False},
        thresholds={"confidence": 0.5, "digits": 0.2, "pixels": 1.2, "embeddings": 0.8},
        mlflow_link="http://mlflow/#/experiments/1/runs/abc",
    )
    text = summary(report)
    assert "# Monitor: **drift**" in text
    assert "| confidence | 3.400 | 0.5 | **drift** |" in text
    assert "| digits | 0.050 | 0.2 | ok |" in text
    assert "| pixels | - | 1.2 | ok |" in text
    assert "live accuracy -" in text and "http://mlflow/#/experiments/1/runs/abc" in text
