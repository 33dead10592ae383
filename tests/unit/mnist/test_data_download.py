"""Downloads against a real HTTP server on 127.0.0.1: good, corrupted, and flaky mirrors."""

import gzip
import http.server
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from mnist import data
from mnist.errors import DownloadError


class _Mirror(http.server.SimpleHTTPRequestHandler):
    fail_first: ClassVar[set[str]] = set()
    requests: ClassVar[list[str]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path in self.fail_first:
            self.fail_first.discard(self.path)
            self.send_error(503, "try again")
            return
        super().do_GET()


@pytest.fixture
def mirror(tmp_path, mnist_path):
    """Serve a copy of the real MNIST .gz files over HTTP on a free loopback port."""
    root = tmp_path / "mirror"
    root.mkdir()
    for name in data.FILES:
        (root / f"{name}.gz").write_bytes((Path(mnist_path) / f"{name}.gz").read_bytes())
    _Mirror.fail_first, _Mirror.requests = set(), []

    def handler(*args, **kwargs):
        return _Mirror(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_download_all_four_files_and_verify(tmp_path, mirror):
    _, url = mirror
    cache = tmp_path / "cache"
    dataset = data.fetch(cache, mirrors=[url], backoff=0)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in data.FILES)
    assert dataset.train.images.shape == (60000, 28, 28)
    # A second fetch reads the cache: no new requests.
    count = len(_Mirror.requests)
    data.fetch(cache, mirrors=[url], backoff=0)
    assert len(_Mirror.requests) == count


def test_corrupted_download_is_rejected_and_leaves_no_file(tmp_path, mirror):
    root, url = mirror
    name = "t10k-labels-idx1-ubyte"
    good = gzip.decompress((root / f"{name}.gz").read_bytes())
    (root / f"{name}.gz").write_bytes(gzip.compress(good[:-1] + bytes([good[-1] ^ 1])))
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"SHA-256 mismatch") as err:
        data.download(name, cache, [url], attempts=2, backoff=0)
    assert name in str(err.value) and str(cache) in str(err.value)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_truncated_download_is_rejected(tmp_path, mirror):
    root, url = mirror
    name = "train-labels-idx1-ubyte"
    path = root / f"{name}.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DownloadError, match="truncated or corrupt gzip"):
        data.download(name, tmp_path / "cache", [url], attempts=1, backoff=0)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_a_mirror_that_fails_once_is_retried(tmp_path, mirror):
    _, url = mirror
    name = "t10k-labels-idx1-ubyte"
    _Mirror.fail_first = {f"/{name}.gz"}
    path = data.download(name, tmp_path / "cache", [url], attempts=2, backoff=0)
    assert _Mirror.requests == [f"/{name}.gz", f"/{name}.gz"]
    labels = data.read_idx(path, ndim=1)
    assert labels.shape == (10000,) and np.bincount(labels)[1] == 1135


def test_falls_back_to_the_next_mirror(tmp_path, mirror):
    _, url = mirror
    path = data.download(
        "t10k-labels-idx1-ubyte", tmp_path / "cache", ["http://127.0.0.1:9/", url], backoff=0
    )
    assert path.is_file()
