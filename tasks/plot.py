import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import plots
from mnist.evaluation import Evaluation
from mnist.tracking import Run


@task(name="plot", cache_policy=NO_CACHE)
def plot(
    history: pd.DataFrame,
    images: np.ndarray,
    result: Evaluation,
    run: Run,
    holdout: Evaluation | None = None,
) -> list[str]:
    """Training curves, a prediction grid and the confusion matrices, logged under `plots/`."""
    figures = plots.all_figures(history, images, result, holdout)
    run.log_figures(figures, "plots")
    get_run_logger().info("logged plots: %s", ", ".join(figures))
    return [f"plots/{name}" for name in figures]
