"""Labelled data added by users: batches of samples in a SQL database, through SQLAlchemy.

`store` keeps them (the `Store`, its transactions, `snapshot`), `engines` connects to the
database a URL names, `tables` maps them, and `holdout` decides, once and for good, which
samples are held out from training.
"""

from mnist.datastore.engines import FILE_NAME, default_url, safe_url
from mnist.datastore.holdout import HOLDOUT_EVERY, sample_digest
from mnist.datastore.store import (
    FEEDBACK,
    SOURCE_NAME,
    WRITERS,
    Store,
    check_source,
    snapshot,
)
from mnist.datastore.tables import Batch, BatchInfo, Sample

__all__ = [
    "FEEDBACK",
    "FILE_NAME",
    "HOLDOUT_EVERY",
    "SOURCE_NAME",
    "WRITERS",
    "Batch",
    "BatchInfo",
    "Sample",
    "Store",
    "check_source",
    "default_url",
    "safe_url",
    "sample_digest",
    "snapshot",
]
