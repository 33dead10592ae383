"""Thin Prefect tasks, one module per stage; the logic lives in `mnist`."""

import mnist.env  # noqa: F401  (first: env defaults, also when a worker loads a flow by path)
from tasks.card import card
from tasks.evaluate import evaluate
from tasks.gate import gate, register, same_inputs
from tasks.ingest import added_data, ingest
from tasks.plot import plot
from tasks.preprocess import preprocess
from tasks.train import log_model, train, warm_start
from tasks.validate import validate

__all__ = [
    "added_data",
    "card",
    "evaluate",
    "gate",
    "ingest",
    "log_model",
    "plot",
    "preprocess",
    "register",
    "same_inputs",
    "train",
    "validate",
    "warm_start",
]
