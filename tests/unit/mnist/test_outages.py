"""How long a run rides out a store that stops answering, and the one line past that."""

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mnist import outages
from mnist.errors import MnistError
from tests.servers import free_port


@pytest.mark.parametrize("seconds", [1, 6, 30, 60, 62, 63, 120, 300, 480])
def test_the_clients_wait_at_least_the_limit_and_not_twice_it(seconds):
    env = outages.client_settings(seconds)
    assert seconds <= outages.prefect_waits(env) < 2 * seconds + 2
    assert seconds <= outages.mlflow_waits(env) < 2 * seconds + 2
    assert env["PREFECT_CLIENT_RETRY_EXTRA_CODES"] == "500,504"


def test_the_default_rides_out_a_minute_and_zero_retries_nothing():
    assert outages.limit({}) == 60
    assert outages.prefect_waits(outages.client_settings(60)) == 62
    zero = outages.client_settings(0)
    assert zero["PREFECT_CLIENT_MAX_RETRIES"] == zero["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "481"])
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


def test_a_store_away_is_told_from_other_failures(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as err:
        MlflowClient(uri).search_experiments()
    assert outages.away(err.value) and outages.away(outages.StoreAway("gone", "X"))
    request = _request("http://127.0.0.1:4200/api/logs/")
    assert outages.away(httpx.ConnectError("refused", request=request))
    assert not outages.away(RuntimeError("x"))
    assert not outages.away(httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]", request=request))
    assert not outages.away(httpx.UnsupportedProtocol("ftp", request=request))
    tls = MlflowException(
        f"API request to {uri}/api/2.0/mlflow/runs/get failed with exception SSLError(bad)"
    )
    assert not outages.away(tls)
    unavailable = MlflowException(
        f"API request to endpoint {uri}/api/2.0/mlflow/runs/get failed with error code 503 != 200"
    )
    assert outages.away(unavailable)
    assert not outages.away(
        httpx.HTTPStatusError("no", request=request, response=httpx.Response(501))
    )


def test_mlflow_waits_are_capped_as_urllib3_caps_them():
    assert (
        outages.mlflow_waits(
            {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
        )
        == 486
    )
    assert outages.client_settings(480)["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "10"
    with pytest.raises(MnistError, match="0 to 480"):
        outages.limit({"MNIST_OUTAGE_SECONDS": "481"})


def test_a_store_away_survives_pickling():
    import pickle

    away = pickle.loads(pickle.dumps(outages.StoreAway("gone", "MLFLOW_TRACKING_URI")))
    assert str(away) == "gone"


@pytest.mark.parametrize("seconds", [6, 60, 480])
def test_urllib3_waits_what_mlflow_is_told_to(seconds):
    from urllib3.util.retry import Retry

    env = outages.client_settings(seconds)
    retries = int(env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    retry = Retry(total=retries, backoff_factor=float(env["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]))
    waited = 0.0
    for _ in range(retries):
        retry = retry.increment(method="GET", url="/", error=ConnectionRefusedError())
        waited += retry.get_backoff_time()
    assert waited == outages.mlflow_waits(env) >= seconds


def _read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.mark.parametrize(
    ("answer", "waited"),
    [(_read_timeout, 62), (lambda request: httpx.Response(500), 126)],
    ids=["no-answer", "500"],
)
def test_prefect_s_client_waits_at_least_the_limit(monkeypatch, answer, waited):
    """Prefect's own client with its retries as set for 60 s: 62 s of waits for a server that
    does not answer; for a 500 it also waits after the last try (126 s)."""
    import anyio
    from prefect.client.base import PrefectHttpxAsyncClient
    from prefect.settings import (
        PREFECT_CLIENT_MAX_RETRIES,
        PREFECT_CLIENT_RETRY_EXTRA_CODES,
        PREFECT_CLIENT_RETRY_JITTER_FACTOR,
        temporary_settings,
    )

    env = outages.client_settings(60)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(anyio, "sleep", sleep)
    settings = {
        PREFECT_CLIENT_MAX_RETRIES: env["PREFECT_CLIENT_MAX_RETRIES"],
        PREFECT_CLIENT_RETRY_EXTRA_CODES: env["PREFECT_CLIENT_RETRY_EXTRA_CODES"],
        PREFECT_CLIENT_RETRY_JITTER_FACTOR: env["PREFECT_CLIENT_RETRY_JITTER_FACTOR"],
    }

    async def send() -> None:
        transport = httpx.MockTransport(answer)  # the server, away
        async with PrefectHttpxAsyncClient(transport=transport, base_url="http://x/api") as c:
            await c.get("/health")

    with temporary_settings(settings), pytest.raises(Exception, match=r"timed out|500"):
        anyio.run(send)
    assert sum(waits) == waited >= outages.prefect_waits(env) >= 60
