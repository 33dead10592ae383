"""mnist/waiting.py: the one polling loop, its HTTP check and its process watch."""

import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mnist.waiting import Gone, answers, exited, never, wait_until
from tests.servers import free_port


def test_returns_the_first_true_answer_of_the_check():
    answers_given = iter([None, 0, "", "ready", "later"])
    assert wait_until(lambda: next(answers_given), timeout=5, interval=0.001) == "ready"
    assert next(answers_given) == "later"  # no call after the first true answer


def test_times_out_after_the_timeout_and_not_before():
    calls = []
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"not ready within 0\.2 s"):
        wait_until(lambda: calls.append(1), timeout=0.2, interval=0.05)
    took = time.monotonic() - started
    assert 0.2 <= took < 1.0
    assert 2 <= len(calls) <= 6  # every `interval`, and once more at the deadline


def test_gone_ends_the_wait_at_once_with_its_reason_before_the_check_runs():
    checked = []
    started = time.monotonic()
    with pytest.raises(Gone, match=r"^the supervisor exited$"):
        wait_until(lambda: checked.append(1), 60, 0.01, gone=lambda: "the supervisor exited")
    assert checked == [] and time.monotonic() - started < 1


def test_gone_is_asked_on_every_try():
    reasons = iter([None, None, "died"])
    with pytest.raises(Gone, match="died"):
        wait_until(lambda: False, 60, 0.001, gone=lambda: next(reasons))


def test_never_gives_no_reason():
    assert never() is None


def test_exited_names_the_exit_code_once_the_process_ended():
    process = subprocess.Popen(["sleep", "30"])
    watch = exited(process)
    try:
        assert watch() is None
    finally:
        process.kill()
        process.wait()
    assert watch() == "exited with code -9"


class _Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_answers_is_true_only_for_200(http):
    assert answers(f"{http}/200")() is True
    assert answers(f"{http}/503")() is False
    assert answers(f"{http}/404")() is False


def test_answers_is_false_when_nothing_listens():
    assert answers(f"http://127.0.0.1:{free_port()}/health", timeout=1)() is False


def test_waiting_for_a_process_that_dies_fails_early_with_its_code():
    process = subprocess.Popen(["sh", "-c", "exit 3"])
    url = f"http://127.0.0.1:{free_port()}/health"
    started = time.monotonic()
    with pytest.raises(Gone, match=r"^exited with code 3$"):
        wait_until(answers(url, timeout=1), 60, 0.05, exited(process))
    assert time.monotonic() - started < 5
