from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import preprocess as pre
from mnist.data import Dataset
from mnist.settings import TrainConfig


@task(name="preprocess", cache_policy=NO_CACHE)
def preprocess(dataset: Dataset, config: TrainConfig) -> pre.Prepared:
    """Scale, reshape, one-hot and split off a seeded validation set."""
    prepared = pre.prepare(
        dataset, config.validation_split, config.seed, config.train_limit, config.test_limit
    )
    get_run_logger().info(
        "splits: %d train, %d validation, %d test",
        len(prepared.train),
        len(prepared.val),
        len(prepared.test),
    )
    return prepared
