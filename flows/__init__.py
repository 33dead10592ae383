"""Prefect flows that chain the tasks."""

import mnist.env  # noqa: F401  (first: env defaults before Prefect, MLflow, TensorFlow)
