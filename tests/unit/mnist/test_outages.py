"""How long a run rides out a store that stops answering, and the one line past that."""

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mnist import outages
from mnist.errors import MnistError
from tests.servers import free_port


@pytest.mark.parametrize("seconds", [1, 6, 30, 60, 62, 63, 120, 600])
def test_the_clients_wait_at_least_the_limit_and_not_twice_it(seconds):
    env = outages.client_settings(seconds)
    assert seconds <= outages.prefect_waits(env) < 2 * seconds + 2
    assert seconds <= outages.mlflow_waits(env) < 2 * seconds + 2
    assert env["PREFECT_CLIENT_RETRY_EXTRA_CODES"] == "500"


def test_the_default_rides_out_a_minute_and_zero_retries_nothing():
    assert outages.limit({}) == 60
    assert outages.prefect_waits(outages.client_settings(60)) == 62
    zero = outages.client_settings(0)
    assert zero["PREFECT_CLIENT_MAX_RETRIES"] == zero["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "4000"])
def test_a_wrong_limit_is_one_line_naming_the_variable(value):
    with pytest.raises(MnistError, match=f"^MNIST_OUTAGE_SECONDS='{value}': give the seconds"):
        outages.limit({"MNIST_OUTAGE_SECONDS": value})


def _request(url: str) -> httpx.Request:
    return httpx.Request("POST", url)


def test_a_prefect_api_that_answers_500_is_named_with_its_wait(monkeypatch):
    api = "http://127.0.0.1:4200/api"
    monkeypatch.setenv("PREFECT_API_URL", api)
    monkeypatch.setenv("PREFECT_CLIENT_MAX_RETRIES", "5")
    request = _request(f"{api}/flow_runs/abc/set_state")
    error = httpx.HTTPStatusError("boom", request=request, response=httpx.Response(500))
    wrapped = RuntimeError("the flow could not finish")
    wrapped.__cause__ = error
    assert outages.describe(wrapped) == (
        f"the Prefect API at {api} did not answer for over 62 s (it answered 500); check that "
        "it is up and that PREFECT_API_URL names it (MNIST_OUTAGE_SECONDS sets how long a run "
        "waits for a store)"
    )


def test_a_refused_connection_to_prefect_is_named(monkeypatch):
    api = "http://admin:secret@127.0.0.1:4200/api"
    monkeypatch.setenv("PREFECT_API_URL", api)
    error = httpx.ConnectError("[Errno 111] Connection refused", request=_request(f"{api}/logs/"))
    line = outages.describe(error)
    assert line is not None and "secret" not in line
    assert line.startswith("the Prefect API at http://admin:***@127.0.0.1:4200/api did not")
    assert "(connection refused)" in line


def test_answers_a_retry_cannot_mend_are_not_outages(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    request = _request("http://127.0.0.1:4200/api/flows/")
    assert (
        outages.describe(httpx.HTTPStatusError("no", request=request, response=httpx.Response(404)))
        is None
    )
    assert outages.describe(ValueError("Connection refused, said the model")) is None
    assert outages.describe(MlflowException("RESOURCE_DOES_NOT_EXIST: no run")) is None


def test_mlflow_giving_up_on_a_refusing_server_is_named(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as err:
        MlflowClient(uri).search_experiments()
    line = outages.describe(err.value)
    assert line is not None
    assert line.startswith(
        f"the MLflow tracking server at {uri} did not answer (connection refused)"
    )


def test_only_mlflow_away_leaves_the_run_to_be_closed_later(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as err:
        MlflowClient(uri).search_experiments()
    away = outages.StoreAway("gone", "MLFLOW_TRACKING_URI")
    assert outages.mlflow_away(err.value) and not outages.mlflow_away(RuntimeError("x"))
    assert outages.mlflow_away(away)
    request = _request("http://127.0.0.1:4200/api/logs/")
    assert not outages.mlflow_away(httpx.ConnectError("refused", request=request))
    assert not outages.mlflow_away(outages.StoreAway("gone", "PREFECT_API_URL"))
