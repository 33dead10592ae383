import keras
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from mnist import evaluation
from mnist.preprocess import Arrays
from mnist.tracking import Run


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(net: keras.Model, test: Arrays, run: Run) -> evaluation.Evaluation:
    """Test loss and accuracy, per-class metrics and confusion matrix, logged to MLflow."""
    result = evaluation.evaluate(net, test)
    per_class = result.per_class()
    run.log_metrics(result.metrics())
    run.log_frame(per_class, "classification_report.csv")
    create_table_artifact(
        key="per-class-metrics",
        table=per_class.to_dict(orient="records"),
        description=f"Per-class precision, recall and F1 on {result.samples} test images",
    )
    get_run_logger().info(
        "test loss %.4f, accuracy %.4f on %d images", result.loss, result.accuracy, result.samples
    )
    return result
