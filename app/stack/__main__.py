"""The production stack on one machine: PostgreSQL, `prefect server` and `mlflow server` on it
(MLflow with proxied artifacts), and process workers on the `mnist-process` pool, run together
by supervisord from `stack/supervisord.conf`, which restarts a piece that dies.

    python -m app.stack up        # `make stack-up`: start, health-check, deploy, print exports
    python -m app.stack status    # `make stack-status`: each piece, its state, uptime, restarts
    python -m app.stack down      # `make stack-down`
    python -m app.stack env       # the export lines a client needs
    python -m app.stack automation   # the automations (zombies; alerts with MNIST_ALERT_URL)
                                     # on the PREFECT_API_URL server

Settings come from variables: `MNIST_STACK_DIR` (state, logs; default `.stack` in the
checkout), `MNIST_STACK_HOST` (default 127.0.0.1), `MNIST_STACK_PG_PORT` (5432),
`MNIST_STACK_PREFECT_PORT` (4200), `MNIST_STACK_MLFLOW_PORT` (5000), `MNIST_STACK_WORKERS` (1),
`MNIST_STACK_DASK_PORT` (8786), `MNIST_STACK_DASK_HTTP_PORT` (8787, loopback),
`MNIST_STACK_DASK_WORKERS` (1);
alerts: `MNIST_ALERT_URL` (an http(s) webhook or an apprise URL; none: no alerts) and
`MNIST_ALERT_REJECTIONS` (3, the gate's rejections in a row that alert).
Bound anywhere but loopback, everything asks for a password (`MNIST_STACK_PASSWORD`, else one
generated into `<dir>/secrets.env`): MLflow's basic-auth app, Prefect's API auth string; the
Dask scheduler takes only TLS peers with a certificate of the stack's own authority
(`<dir>/tls/`).
State (the databases, the artifacts) stays in the directory between restarts.
"""

from __future__ import annotations

import sys

from app.stack import postgres, supervisor
from app.stack.config import Stack, StackError
from app.stack.lifecycle import alert_url, automations, down, prepare, up, wait


def _say_alerts() -> None:
    url = alert_url()
    where = f"alerts to {url.split('://', 1)[0]}://..." if url else "no alerts (no MNIST_ALERT_URL)"
    print(where, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """`python -m app.stack up|status|down|env|automation`, and `postgres`, `prepare PIECE
    NEEDS...` and `wait NEEDS...` for supervisord's pieces; 1 with one line on a StackError (and
    from `status` when a piece does not run), 2 with this help."""
    args = argv if argv is not None else sys.argv[1:]
    stack = Stack.from_env()
    try:
        if args[:1] == ["postgres"]:
            return postgres.serve(stack)
        if args[:1] == ["wait"]:
            for what in args[1:]:
                wait(stack, what)
        elif args[:1] == ["prepare"] and len(args) > 1:
            prepare(stack, *args[1:])
        elif args[:1] == ["status"]:
            found = supervisor.pieces(stack)
            print(supervisor.table(found), end="")
            if idle := [p.name for p in found if p.state != "RUNNING"]:
                print(f"not running: {', '.join(idle)}", file=sys.stderr)
                return 1
        elif args[:1] == ["up"]:
            seconds = up(stack)
            print(
                f"stack up in {seconds:.1f} s: Prefect {stack.prefect_api} (UI "
                f"http://{stack.reach}:{stack.prefect_port}), MLflow {stack.mlflow_uri}, "
                f"{stack.workers} worker(s) on mnist-process, Dask {stack.dask_address} with "
                f"{stack.dask_workers} worker(s); logs {stack.dir / 'logs'}\n"
                "For a client:",
                file=sys.stderr,
            )
            print(stack.exports(), end="")
            _say_alerts()
        elif args[:1] == ["down"]:
            print(
                "stack stopped" if down(stack) else f"no stack running in {stack.dir}",
                file=sys.stderr,
            )
        elif args[:1] == ["env"]:
            print(stack.exports(), end="")
        elif args[:1] == ["automation"]:  # for a Prefect server that `up` did not start
            for name, what in automations().items():
                print(f"{name}: {what}", file=sys.stderr)
            _say_alerts()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except StackError as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
