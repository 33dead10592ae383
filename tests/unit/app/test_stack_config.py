"""app/stack/config.py and app/stack/credentials.py: the stack's settings, addresses, secrets
and environments, without starting anything."""

import shlex
import stat

import pytest

from app.stack.config import ROOT, Stack
from app.stack.credentials import kept_secret, write_private


@pytest.fixture
def environ(tmp_path, monkeypatch) -> dict[str, str]:
    monkeypatch.delenv("MNIST_STACK_PASSWORD", raising=False)
    return {"MNIST_STACK_DIR": str(tmp_path / "stack")}


def test_defaults_are_the_documented_ones():
    stack = Stack.from_env({})
    assert stack.dir == ROOT / ".stack"
    assert (stack.host, stack.pg_port, stack.prefect_port, stack.mlflow_port) == (
        "127.0.0.1",
        5432,
        4200,
        5000,
    )
    assert stack.workers == 1
    assert (stack.dask_port, stack.dask_http_port, stack.dask_workers) == (8786, 8787, 1)
    assert stack.dask_address == "tcp://127.0.0.1:8786"
    assert (ROOT / "stack" / "supervisord.conf").is_file()  # ROOT is the checkout


def test_variables_set_every_setting(tmp_path):
    stack = Stack.from_env(
        {
            "MNIST_STACK_DIR": str(tmp_path / "s"),
            "MNIST_STACK_HOST": "0.0.0.0",
            "MNIST_STACK_PG_PORT": "1",
            "MNIST_STACK_PREFECT_PORT": "2",
            "MNIST_STACK_MLFLOW_PORT": "3",
            "MNIST_STACK_WORKERS": "4",
        }
    )
    assert stack == Stack(tmp_path / "s", "0.0.0.0", 1, 2, 3, 4)
    assert stack.prefect_api == "http://127.0.0.1:2/api"  # reached on loopback
    assert stack.mlflow_uri == "http://127.0.0.1:3"


@pytest.mark.parametrize(
    ("host", "secured"),
    [("127.0.0.1", False), ("localhost", False), ("::1", False), ("0.0.0.0", True)],
)
def test_only_a_loopback_stack_goes_without_passwords(environ, host, secured):
    stack = Stack.from_env(environ | {"MNIST_STACK_HOST": host})
    assert stack.secured is secured
    client = stack.client_env()
    assert ("MLFLOW_TRACKING_PASSWORD" in client) is secured
    assert ("PREFECT_API_AUTH_STRING" in client) is secured
    server = stack.server_env()
    assert (server["MNIST_STACK_MLFLOW_APP"] == "--app-name basic-auth") is secured
    assert ("PREFECT_SERVER_API_AUTH_STRING" in server) is secured


def test_secrets_are_generated_once_kept_private_and_distinct(environ):
    stack = Stack.from_env(environ)
    first = stack.password()
    assert len(first) >= 24 and Stack.from_env(environ).password() == first
    assert stack.pg_password != first
    assert stat.S_IMODE((stack.dir / "secrets.env").stat().st_mode) == 0o600
    kept = (stack.dir / "secrets.env").read_text().splitlines()
    assert sorted(line.split("=")[0] for line in kept) == [
        "MNIST_STACK_PASSWORD",
        "MNIST_STACK_PG_PASSWORD",
    ]


def test_a_given_password_wins_over_the_kept_one(environ, monkeypatch):
    stack = Stack.from_env(environ | {"MNIST_STACK_HOST": "0.0.0.0"})
    monkeypatch.setenv("MNIST_STACK_PASSWORD", "given")
    client = stack.client_env()
    assert client["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert client["MLFLOW_TRACKING_PASSWORD"] == "given"
    assert client["PREFECT_API_AUTH_STRING"] == "admin:given"


def test_databases_carry_the_postgres_password_and_driver(environ):
    stack = Stack.from_env(environ | {"MNIST_STACK_PG_PORT": "6543"})
    secret = stack.pg_password
    assert (
        stack.database("mlflow") == f"postgresql+psycopg://postgres:{secret}@127.0.0.1:6543/mlflow"
    )
    server = stack.server_env()
    assert server["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert server["MNIST_STACK_MLFLOW_DB"] == stack.database("mlflow")
    assert stack.client_env()["MNIST_DATASTORE"] == stack.database("mnist_data")


def test_mlflow_auth_config_is_private_and_names_the_admin(environ, monkeypatch):
    monkeypatch.setenv("MNIST_STACK_PASSWORD", "s3cret")
    stack = Stack.from_env(environ | {"MNIST_STACK_HOST": "0.0.0.0"})
    path = stack.dir / "mlflow-auth.ini"
    assert stack.server_env()["MLFLOW_AUTH_CONFIG_PATH"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "admin_password = s3cret" in text and stack.database("mlflow_auth") in text


def test_exports_survive_a_shell(environ, monkeypatch):
    monkeypatch.setenv("MNIST_STACK_PASSWORD", "it's $HOME")
    stack = Stack.from_env(environ | {"MNIST_STACK_HOST": "0.0.0.0"})
    lines = stack.exports().splitlines()
    parsed = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert parsed == stack.client_env()


def test_write_private_replaces_whole_files_and_leaves_no_temp(tmp_path):
    path = tmp_path / "deep" / "secret"
    write_private(path, "one")
    write_private(path, "two")
    assert path.read_text() == "two" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret"]


def test_kept_secret_keeps_other_names(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text("OTHER=x=y\n")
    made = kept_secret(path, "NEW")
    assert kept_secret(path, "NEW") == made
    assert kept_secret(path, "OTHER") == "x=y"
