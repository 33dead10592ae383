from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import data, datastore
from mnist.errors import DownloadError


def _download_failed(task, task_run, state) -> bool:
    """Retry only when mirrors failed; a damaged local file will not mend itself."""
    try:
        state.result()
    except DownloadError:
        return True
    except Exception:
        return False
    return False


@task(
    name="ingest",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=_download_failed,
    cache_policy=NO_CACHE,
)
def ingest(data_dir: Path | None) -> data.Dataset:
    """Read MNIST (downloading into the cache if needed) and log what was read."""
    dataset = data.load(data_dir)
    get_run_logger().info(
        "read %d training images from %s and %d test images from %s; digest %s",
        len(dataset.train),
        dataset.train.source,
        len(dataset.test),
        dataset.test.source,
        dataset.digest[:12],
    )
    return dataset


@task(name="added-data", cache_policy=NO_CACHE)
def added_data(url: str | None) -> data.Added:
    """The snapshot of every active batch of added data (`mnist data list`)."""
    snapshot = datastore.snapshot(url)
    store = datastore.safe_url(url or datastore.default_url())
    logger = get_run_logger()
    if not len(snapshot):
        logger.info("no added data in %s", store)
    else:
        logger.info(
            "added data from %s: %d training and %d holdout samples in batches %s; digest %s",
            store,
            len(snapshot.train),
            len(snapshot.holdout),
            ",".join(map(str, snapshot.batches)),
            snapshot.digest[:12],
        )
    return snapshot
