"""The stack's settings (`MNIST_STACK_*` variables), its addresses, and the environments its
processes and its clients get; the credentials come from `app.stack.credentials`."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.stack.certificates import Certificates
from app.stack.certificates import ensure as ensure_certificates
from app.stack.credentials import kept_secret, write_private
from flows.automations import HEARTBEAT_SECONDS
from mnist import outages
from mnist.settings import loopback

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATABASES = ("prefect", "mlflow", "mlflow_auth", "mnist_data", "mnist_sweeps")
USER = "admin"


class StackError(Exception):
    """The stack cannot start or stop: one line naming why."""


@dataclass(frozen=True)
class Stack:
    """Where the stack keeps its state, where it binds, and how many workers it runs."""

    dir: Path
    host: str
    pg_port: int
    prefect_port: int
    mlflow_port: int
    workers: int
    dask_port: int = 8786
    dask_http_port: int = 8787
    dask_workers: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Stack:
        env = (os.environ if environ is None else environ).get
        return cls(
            dir=Path(env("MNIST_STACK_DIR", str(ROOT / ".stack"))).expanduser().resolve(),
            host=env("MNIST_STACK_HOST", "127.0.0.1"),
            pg_port=int(env("MNIST_STACK_PG_PORT", "5432")),
            prefect_port=int(env("MNIST_STACK_PREFECT_PORT", "4200")),
            mlflow_port=int(env("MNIST_STACK_MLFLOW_PORT", "5000")),
            workers=int(env("MNIST_STACK_WORKERS", "1")),
            dask_port=int(env("MNIST_STACK_DASK_PORT", "8786")),
            dask_http_port=int(env("MNIST_STACK_DASK_HTTP_PORT", "8787")),
            dask_workers=int(env("MNIST_STACK_DASK_WORKERS", "1")),
        )

    @property
    def secured(self) -> bool:
        """Authentication is on unless everything binds a loopback address."""
        return not loopback(self.host)

    @property
    def reach(self) -> str:
        """The address clients on this machine use."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host

    def secret(self, name: str) -> str:
        """A secret kept in <dir>/secrets.env (mode 0600), generated the first time."""
        return kept_secret(self.dir / "secrets.env", name)

    def password(self) -> str:
        """The password of the user `admin` (MLflow, Prefect) when the stack is secured."""
        return os.environ.get("MNIST_STACK_PASSWORD") or self.secret("MNIST_STACK_PASSWORD")

    @property
    def pg_password(self) -> str:
        """The password of PostgreSQL's user `postgres` (always one: its port is TCP)."""
        return self.secret("MNIST_STACK_PG_PASSWORD")

    @property
    def pg_data(self) -> Path:
        return self.dir / "postgres"

    def database(self, name: str, driver: str = "psycopg") -> str:
        secret = self.pg_password
        return f"postgresql+{driver}://postgres:{secret}@127.0.0.1:{self.pg_port}/{name}"

    @property
    def prefect_api(self) -> str:
        return f"http://{self.reach}:{self.prefect_port}/api"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.reach}:{self.mlflow_port}"

    @property
    def dask_address(self) -> str:
        """The Dask scheduler: TLS with client certificates beyond loopback."""
        return f"{'tls' if self.secured else 'tcp'}://{self.reach}:{self.dask_port}"

    def certificates(self) -> Certificates:
        return ensure_certificates(self.dir / "tls", self.host)

    def client_env(self) -> dict[str, str]:
        """What a client needs: the two URLs, the added-data store, the Dask scheduler and
        the sweeps' study storage, with credentials (and Dask's client certificate)."""
        env = {
            "PREFECT_API_URL": self.prefect_api,
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MNIST_DATASTORE": self.database("mnist_data"),
            "MNIST_DASK_ADDRESS": self.dask_address,
            "MNIST_SWEEP_STORAGE": self.database("mnist_sweeps"),
        }
        if self.secured:
            password = self.password()
            env |= {
                "PREFECT_API_AUTH_STRING": f"{USER}:{password}",
                "MLFLOW_TRACKING_USERNAME": USER,
                "MLFLOW_TRACKING_PASSWORD": password,
                **self.certificates().dask_env("client"),
            }
        return env

    def server_env(self) -> dict[str, str]:
        """The environment of supervisord and so of every piece it runs."""
        env = {
            **self.client_env(),
            "MNIST_STACK_DIR": str(self.dir),
            "MNIST_STACK_HOST": self.host,
            "MNIST_STACK_PG_PORT": str(self.pg_port),
            "MNIST_STACK_PREFECT_PORT": str(self.prefect_port),
            "MNIST_STACK_MLFLOW_PORT": str(self.mlflow_port),
            "MNIST_STACK_WORKERS": str(self.workers),
            "MNIST_STACK_DASK_PORT": str(self.dask_port),
            "MNIST_STACK_DASK_HTTP_PORT": str(self.dask_http_port),
            "MNIST_STACK_DASK_WORKERS": str(self.dask_workers),
            "MNIST_STACK_DASK_PROTOCOL": "tls" if self.secured else "tcp",
            "MNIST_STACK_MLFLOW_DB": self.database("mlflow"),
            "MNIST_STACK_ARTIFACTS": str(self.dir / "artifacts"),
            "MNIST_STACK_MLFLOW_APP": "",
            "PREFECT_HOME": str(self.dir / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database("prefect", "asyncpg"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
            "DASK_LOGGING__DISTRIBUTED": "info",  # workers joining and leaving, in the logs
            # the workers' flow runs ride out an outage as the command line's runs do
            **outages.client_settings(outages.limit()),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        if self.secured:
            env["PREFECT_SERVER_API_AUTH_STRING"] = env["PREFECT_API_AUTH_STRING"]
            env["MNIST_STACK_MLFLOW_APP"] = "--app-name basic-auth"
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(self._auth_config())
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self.secret("MLFLOW_FLASK_SERVER_SECRET_KEY")
            env |= self.certificates().dask_env("server")  # its client's, for supervisord's
        return env

    def _auth_config(self) -> Path:
        """MLflow's basic-auth configuration (mode 0600: it holds the admin's password)."""
        path = self.dir / "mlflow-auth.ini"
        text = (
            f"[mlflow]\ndefault_permission = READ\n"
            f"database_uri = {self.database('mlflow_auth')}\n"
            f"admin_username = {USER}\nadmin_password = {self.password()}\n"
            "authorization_function = "
            "mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        write_private(path, text)
        return path

    def exports(self) -> str:
        """`export NAME=value` lines of `client_env()`, for a shell's `eval`."""
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.client_env().items())
