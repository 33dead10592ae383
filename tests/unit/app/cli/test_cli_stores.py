"""`app.cli.stores`: which store addresses each command takes, and `main` refusing a wrong one
in one line, exit status 1, before the command runs."""

from __future__ import annotations

import pytest

from app.cli import main, parser, stores
from mnist.addresses import Address

MLFLOW = Address("MLFLOW_TRACKING_URI", "sqlite:///m.db", "mlflow")
DATASTORE = Address("MNIST_DATASTORE", "sqlite:///d.db", "datastore")


@pytest.fixture
def env(monkeypatch):
    for name in ("MLFLOW_REGISTRY_URI", "MNIST_ADDED_DATA", "MNIST_DATASTORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", MLFLOW.value)
    monkeypatch.setenv("MNIST_DATASTORE", DATASTORE.value)
    monkeypatch.setenv("PREFECT_API_URL", "http://p:4200/api")
    return monkeypatch


def _prefect(reach: bool) -> Address:
    return Address("PREFECT_API_URL", "http://p:4200/api", "prefect", reach)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["registry", "list"], [MLFLOW]),
        (["train"], [MLFLOW, DATASTORE, _prefect(True)]),
        (["train", "--no-added-data"], [MLFLOW, _prefect(True)]),
        (["doctor"], [MLFLOW, _prefect(True)]),
        (["predict", "--model", "models:/m@champion", "x.png"], [MLFLOW]),
        (["predict", "--model", "model.keras", "x.png"], []),
        (["export", "3", "-o", "x"], [MLFLOW]),
        (["data", "list"], [DATASTORE, _prefect(False)]),
        (
            ["data", "list", "--datastore", "sqlite:///o.db"],
            [Address("--datastore", "sqlite:///o.db", "datastore"), _prefect(False)],
        ),
        (["serve"], [MLFLOW, DATASTORE, _prefect(False)]),
        (["serve", "--no-feedback", "--no-prediction-log"], [MLFLOW, _prefect(False)]),
        (["recipes"], []),
    ],
)
def test_each_command_takes_its_stores(env, argv, expected):
    assert stores.of(parser().parse_args(argv)) == expected


def test_a_wrong_address_is_one_line_and_status_1_before_the_command(env, capsys):
    env.setenv("MLFLOW_TRACKING_URI", "htp://localhost:5000")
    assert main(["registry", "list"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mnist: error: MLFLOW_TRACKING_URI=htp://localhost:5000: unknown ")
