"""Labelled data added by users, and what the server answered, in a SQL database (SQLAlchemy).

`store` keeps the labelled batches (the `Store`, its transactions, reviews, `snapshot`),
`predictions` the prediction log and the monitor's windows, `engines` connects to the
database a URL names, `tables` maps it, `schema` creates and upgrades it, and `holdout`
decides, once and for good, which samples are held out from training.
"""

from mnist.datastore.engines import FILE_NAME, default_url, safe_url
from mnist.datastore.holdout import HOLDOUT_EVERY, sample_digest
from mnist.datastore.predictions import Logged, PredictionLog, Queued, Window, new_ids
from mnist.datastore.store import (
    ANONYMOUS,
    FEEDBACK,
    SOURCE_NAME,
    WRITERS,
    Store,
    check_source,
    snapshot,
)
from mnist.datastore.tables import (
    ACCEPTED,
    PENDING,
    REJECTED,
    TRUSTED,
    Batch,
    BatchInfo,
    MonitorWindow,
    Prediction,
    Sample,
)

__all__ = [
    "ACCEPTED",
    "ANONYMOUS",
    "FEEDBACK",
    "FILE_NAME",
    "HOLDOUT_EVERY",
    "PENDING",
    "REJECTED",
    "SOURCE_NAME",
    "TRUSTED",
    "WRITERS",
    "Batch",
    "BatchInfo",
    "Logged",
    "MonitorWindow",
    "Prediction",
    "PredictionLog",
    "Queued",
    "Sample",
    "Store",
    "Window",
    "check_source",
    "default_url",
    "new_ids",
    "safe_url",
    "sample_digest",
    "snapshot",
]
