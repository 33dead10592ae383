"""`mnist.addresses`: each kind of wrong store address is one line naming the setting, the
value (no password) and what to do, and ends within its bound; good ones pass, a SQLite file
without a connection."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import mlflow
import pytest

from mnist import addresses
from mnist.addresses import (
    Address,
    Malformed,
    MissingDriver,
    PlainPath,
    UnknownScheme,
    Unreachable,
    WrongAddress,
    check,
    check_form,
)
from mnist.errors import MnistError
from tests.servers import free_port

TRACKING = "MLFLOW_TRACKING_URI"


@pytest.fixture(autouse=True)
def _forget_reached_hosts(monkeypatch):
    monkeypatch.setattr(addresses, "_reached", set())


@pytest.mark.parametrize(
    ("kind", "value", "error", "says"),
    [
        (
            "mlflow",
            "htp://localhost:5000",
            UnknownScheme,
            "scheme 'htp' (did you mean http?)",
        ),
        ("mlflow", "mlruns", PlainPath, "use a database such as sqlite:///mlflow.db"),
        ("mlflow", "file:///tmp/mlruns", PlainPath, "MLFLOW_ALLOW_FILE_STORE=true"),
        ("mlflow", "postgres://u@h/x", UnknownScheme, "did you mean postgresql?"),
        ("mlflow", "mysql://u@h/x", MissingDriver, "no driver for mysql (No module named"),
        ("mlflow", "postgresql+nonexistent://u@h/x", MissingDriver, "postgresql+DRIVER://"),
        ("mlflow", "localhost:5000", Malformed, "no scheme; give one: http://localhost:5000"),
        ("mlflow", "sqlite:/mlflow.db", Malformed, "not a URL; give an MLflow server"),
        ("mlflow", "http://h:99999", Malformed, "the port is not a number from 0 to 65535"),
        ("datastore", "data.db", PlainPath, "a path, not a URL; use sqlite:///data.db"),
        ("datastore", "http://h:5000", UnknownScheme, "give a SQLAlchemy URL"),
        ("datastore", "sqlte:///data.db", UnknownScheme, "did you mean sqlite?"),
        ("prefect", "htps://h/api", UnknownScheme, "did you mean https?"),
        ("prefect", "http://h:4200", Malformed, "the API is at /api: http://h:4200/api"),
    ],
)
def test_a_wrong_form_is_one_line_naming_setting_value_and_remedy(kind, value, error, says):
    with pytest.raises(error) as err:
        check_form(Address("SETTING", value, kind))
    message = str(err.value)
    assert message.startswith(f"SETTING={value}: ") and says in message, message
    assert "\n" not in message and isinstance(err.value, WrongAddress)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("mlflow", "sqlite:///mlflow.db"),
        ("mlflow", "sqlite:////abs/path/mlflow.db"),
        ("mlflow", "http://127.0.0.1:5000"),
        ("mlflow", "https://mlflow.example.com/"),
        ("mlflow", "postgresql://u:p@h:5432/mlflow"),
        ("mlflow", "postgresql+psycopg://u@h/mlflow"),
        ("mlflow", "databricks"),
        ("datastore", "sqlite://"),
        ("datastore", "postgres://u@h/data"),  # psycopg 3, as mnist.datastore connects
        ("prefect", "http://127.0.0.1:4200/api"),
        ("prefect", "https://api.prefect.cloud/api/accounts/a/workspaces/w"),
    ],
)
def test_a_right_form_passes(kind, value):
    check_form(Address("SETTING", value, kind))


def test_the_file_store_passes_where_mlflow_is_told_to_allow_it(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_form(Address(TRACKING, "mlruns", "mlflow"))


def test_the_password_is_hidden():
    with pytest.raises(MissingDriver) as err:
        check_form(Address(TRACKING, "mysql://admin:s3cret@db:3306/mlflow", "mlflow"))
    assert "s3cret" not in str(err.value) and "admin:***@db:3306" in str(err.value)


def test_no_part_of_a_password_is_shown():
    """A password with an unencoded `/` or `@`, or given in the query, is hidden whole; a bad
    port's library message would quote the start of such a password."""
    for value, shown in [
        ("http://user:s3cr/et@h:5000", "http://user:***@h:5000"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?sslmode=require&password=s3cret", "password=***"),
    ]:
        assert shown in addresses.safe_url(value) and "s3cr" not in addresses.safe_url(value)
    with pytest.raises(Malformed) as err:
        check_form(Address("PREFECT_API_URL", "http://u:s3cr#t@h:4200/api", "prefect"))
    assert "s3cr" not in str(err.value)


def test_a_driver_told_to_connect_elsewhere_is_not_probed(monkeypatch):
    """libpq's `host=` (a Unix socket), `port=`, or `PG*` variables win over the URL's host and
    port: probing those would refuse an address that works."""
    refused = free_port()
    for query in ("host=/var/run/postgresql", f"port={free_port()}"):
        check([Address(TRACKING, f"postgresql://u@127.0.0.1:{refused}/db?{query}", "mlflow")])
    monkeypatch.setenv("PGPORT", "6432")
    check([Address(TRACKING, f"postgresql://u@127.0.0.1:{refused}/db", "mlflow")])


def test_the_connect_time_is_a_setting_and_zero_only_checks_forms(monkeypatch):
    refused = Address(TRACKING, f"http://127.0.0.1:{free_port()}", "mlflow")
    monkeypatch.setenv("MNIST_CONNECT_SECONDS", "0")
    check([refused])
    with pytest.raises(PlainPath):
        check([Address(TRACKING, "mlruns", "mlflow")])
    monkeypatch.setenv("MNIST_CONNECT_SECONDS", "soon")
    with pytest.raises(MnistError, match="MNIST_CONNECT_SECONDS='soon'"):
        check([refused])


def test_mlflows_databases_are_those_it_takes():
    from mlflow.store.db.db_types import DATABASE_ENGINES

    assert sorted(addresses.MLFLOW_DATABASES) == sorted(DATABASE_ENGINES)


def test_a_sqlite_file_is_checked_without_loading_sqlalchemy():
    import subprocess
    import sys

    probe = (
        "import sys; from mnist import addresses\n"
        "addresses.check(addresses.tracking({'MLFLOW_TRACKING_URI': 'sqlite:///x/mlflow.db'}))\n"
        "print('sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.fixture
def silent() -> Iterator[int]:
    """A port whose connections are never answered: a listening socket whose one-place
    backlog is already taken, so the kernel drops the next handshake."""
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler.connect(server.getsockname())
        yield server.getsockname()[1]


def _fails(address: Address, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(Unreachable) as err:
        check([address], timeout=timeout)
    return str(err.value), time.monotonic() - started


def test_a_host_that_refuses_fails_at_once():
    port = free_port()  # closed
    value = f"postgresql://nobody@127.0.0.1:{port}/x"
    message, took = _fails(Address(TRACKING, value, "mlflow"), timeout=5)
    assert message == (
        f"{TRACKING}={value}: 127.0.0.1:{port} refuses connections; start the server there, "
        f"or correct {TRACKING}"
    )
    assert took < 1


def test_a_host_that_does_not_answer_fails_within_the_timeout(silent):
    value = f"http://127.0.0.1:{silent}"
    message, took = _fails(Address(TRACKING, value, "mlflow"), timeout=0.5)
    assert f"127.0.0.1:{silent} did not answer within 0.5 s; check the host" in message
    assert 0.4 < took < 2


def test_an_http_server_that_accepts_and_never_answers_fails_within_the_timeout():
    with socket.socket() as hung:  # the kernel accepts into the backlog; nobody answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        value = f"http://127.0.0.1:{hung.getsockname()[1]}"
        message, took = _fails(Address(TRACKING, value, "mlflow"), timeout=0.5)
    assert "did not answer within 0.5 s; check the host, the port, the server" in message
    assert 0.4 < took < 2


def test_a_database_port_is_only_connected_to():
    with socket.socket() as quiet:  # a database speaks when spoken to: no request is sent
        quiet.bind(("127.0.0.1", 0))
        quiet.listen(8)
        check([Address(TRACKING, f"postgresql://u@127.0.0.1:{quiet.getsockname()[1]}/x", "mlflow")])


def test_a_host_without_an_address_fails(monkeypatch):
    value = "http://no-such-host.invalid:4200/api"
    message, took = _fails(Address("PREFECT_API_URL", value, "prefect"), timeout=3)
    assert "host 'no-such-host.invalid' has no address" in message or "did not resolve" in message
    assert took < 5


def test_hosts_are_tried_at_once_and_the_first_wrong_one_is_named(silent):
    refused = free_port()
    wrong = [
        Address("MNIST_DATASTORE", f"postgresql://u:pw@127.0.0.1:{silent}/d", "datastore"),
        Address(TRACKING, f"http://127.0.0.1:{refused}", "mlflow"),
    ]
    started = time.monotonic()
    with pytest.raises(Unreachable) as err:
        check(wrong, timeout=1)
    assert time.monotonic() - started < 2.5  # one timeout, not one each
    assert str(err.value).startswith(f"MNIST_DATASTORE=postgresql://u:***@127.0.0.1:{silent}/d")


def test_a_host_that_answers_passes_and_is_not_asked_again():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = Address(TRACKING, f"http://127.0.0.1:{server.server_address[1]}", "mlflow")
        check([address], timeout=2)
    finally:
        server.shutdown()
        server.server_close()
    check([address], timeout=2)  # closed by now: known good in this process


def test_an_address_only_for_hints_is_not_connected_to():
    check([Address("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api", "prefect", False)])


def test_the_environment_names_each_address():
    env = {
        "MLFLOW_TRACKING_URI": "http://m:5000",
        "MLFLOW_REGISTRY_URI": "sqlite:///r.db",
        "PREFECT_API_URL": "http://p:4200/api",
        "MNIST_DATASTORE": "sqlite:///d.db",
    }
    assert [a.setting for a in addresses.tracking(env)] == [TRACKING, "MLFLOW_REGISTRY_URI"]
    assert addresses.prefect(False, env) == [
        Address("PREFECT_API_URL", "http://p:4200/api", "prefect", False)
    ]
    assert addresses.datastore("sqlite:///d.db", env)[0].setting == "MNIST_DATASTORE"
    assert addresses.datastore("sqlite:///o.db", env)[0].setting == "--datastore"
    assert addresses.tracking({}) == addresses.prefect(env={}) == addresses.datastore(None) == []


def test_the_tracking_door_refuses_a_plain_path_in_one_line(monkeypatch):
    """Every MLflow call's first contact (`mnist.tracking`) checks the form, for entry points
    other than the command line (workers, the HTTP service)."""
    from mnist import tracking

    monkeypatch.setenv(TRACKING, "mlruns")
    mlflow.set_tracking_uri("mlruns")
    try:
        with pytest.raises(PlainPath, match=f"^{TRACKING}=mlruns: a path is MLflow's file store"):
            tracking.client()
    finally:
        mlflow.set_tracking_uri(None)  # pyright: ignore[reportArgumentType]  (None: unset)
