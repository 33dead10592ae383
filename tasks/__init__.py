"""Thin Prefect tasks, one module per stage; the logic lives in `mnist`."""

import mnist.env  # noqa: F401  (first: env defaults, also when a worker loads a flow by path)
from tasks.evaluate import evaluate
from tasks.gate import gate, register
from tasks.ingest import ingest
from tasks.plot import plot
from tasks.preprocess import preprocess
from tasks.train import log_model, train
from tasks.validate import validate

__all__ = [
    "evaluate",
    "gate",
    "ingest",
    "log_model",
    "plot",
    "preprocess",
    "register",
    "train",
    "validate",
]
