"""mnist-pipeline: the domain library (data, validation, models, training, evaluation, tracking).

No Prefect in here: every function is usable from a notebook or a test on its own.
"""

__version__ = "0.1.0"
