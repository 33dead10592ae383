"""The production stack on one machine: PostgreSQL, `prefect server` and `mlflow server` on it
(MLflow with proxied artifacts), and process workers on the `mnist-process` pool, run together
by supervisord from `stack/supervisord.conf` (it restarts a piece that dies);
`python -m app.stack` drives it.

- `app.stack.config`: the settings (`MNIST_STACK_*`), addresses and environments;
- `app.stack.credentials`: the generated secrets;
- `app.stack.postgres`: running PostgreSQL (also for the tests);
- `app.stack.supervisor`: starting supervisord, each piece's state, uptime and restarts;
- `app.stack.processes`: the stack's processes, and what a killed piece left running;
- `app.stack.lifecycle`: up, down, waiting for each piece, deploying `prefect.yaml`;
- `app.stack.__main__`: the command.
"""

from app.stack.config import Stack, StackError
from app.stack.lifecycle import deploy, down, up, wait
from app.stack.processes import members
from app.stack.supervisor import Piece, pieces

__all__ = ["Piece", "Stack", "StackError", "deploy", "down", "members", "pieces", "up", "wait"]
