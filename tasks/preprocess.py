from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import preprocess as pre
from mnist.data import Added, Dataset
from mnist.settings import TrainConfig


@task(name="preprocess", cache_policy=NO_CACHE)
def preprocess(
    dataset: Dataset, added: Added, config: TrainConfig, warm: bool = False
) -> pre.Prepared:
    """Scale, reshape, one-hot and split off a seeded validation set; added training samples
    join the training split (repeated to `added_share` of it), the added holdout is its own.
    A warm start rehearses `finetune_mnist_images` of MNIST, with `finetune_added_share`."""
    share = config.finetune_added_share if warm else config.added_share
    rehearse = config.finetune_mnist_images if warm else None
    prepared = pre.prepare(
        dataset,
        config.validation_split,
        config.seed,
        config.train_limit,
        config.test_limit,
        added,
        share,
        rehearse,
    )
    logger = get_run_logger()
    logger.info(
        "splits: %d train, %d validation, %d test, %d added holdout",
        len(prepared.train),
        len(prepared.val),
        len(prepared.test),
        len(prepared.holdout),
    )
    if len(added.train):
        times = pre.repeats(
            len(added.train), len(prepared.train) - len(added.train), config.added_share
        )
        logger.info("%d added training samples, each %d time(s) per epoch", len(added.train), times)
    return prepared
