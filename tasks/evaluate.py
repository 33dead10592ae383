from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from mnist import evaluation
from mnist.preprocess import Arrays
from mnist.tracking import Run

if TYPE_CHECKING:
    import keras  # only a type here: a flow's module imports without TensorFlow

WHAT = {"test": "MNIST test images", "holdout": "added holdout images"}


@task(name="evaluate", task_run_name="evaluate-{split}", cache_policy=NO_CACHE)
def evaluate(
    net: keras.Model, data: Arrays, run: Run, split: str = "test"
) -> evaluation.Evaluation:
    """Loss and accuracy (per source too), per-class metrics and the confusion matrix of one
    split, logged to MLflow as `<split>_accuracy` etc. and to Prefect."""
    result = evaluation.evaluate(net, data)
    per_class = result.per_class()
    run.log_metrics(result.metrics(split))
    run.log_frame(
        per_class,
        "classification_report.csv" if split == "test" else f"classification_report_{split}.csv",
    )
    create_table_artifact(
        key="per-class-metrics" if split == "test" else f"{split}-per-class-metrics",
        table=per_class.to_dict(orient="records"),
        description=f"Per-class precision, recall and F1 on {result.samples} {WHAT[split]}",
    )
    sources = "".join(f", {g} {a:.4f}" for g, a in result.group_accuracy().items())
    get_run_logger().info(
        "%s loss %.4f, accuracy %.4f on %d images%s",
        split,
        result.loss,
        result.accuracy,
        result.samples,
        sources,
    )
    return result
