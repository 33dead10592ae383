"""The production stack on one machine: PostgreSQL, `prefect server` and `mlflow server` on it
(MLflow with proxied artifacts), and process workers on the `mnist-process` pool, run together
by honcho (a Procfile runner) from `stack/Procfile`; `python -m app.stack` drives it.

- `app.stack.config`: the settings (`MNIST_STACK_*`), addresses and environments;
- `app.stack.credentials`: the generated secrets;
- `app.stack.postgres`: running PostgreSQL (also for the tests);
- `app.stack.lifecycle`: up, down, waiting for each piece, deploying `prefect.yaml`;
- `app.stack.__main__`: the command.
"""

from app.stack.config import Stack, StackError
from app.stack.lifecycle import deploy, down, members, up, wait

__all__ = ["Stack", "StackError", "deploy", "down", "members", "up", "wait"]
