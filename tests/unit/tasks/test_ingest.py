"""`tasks.ingest`: the ingest task retries a failed download, never a damaged local file."""

from prefect.states import Completed, Failed

from mnist.errors import DownloadError, MnistError
from tasks.ingest import _download_failed


def test_only_a_failed_download_is_retried():
    def retried(state) -> bool:
        return _download_failed(None, None, state)

    assert retried(Failed(data=DownloadError("mirrors unreachable")))
    assert not retried(Failed(data=MnistError("train-images-idx3-ubyte.gz: file is empty")))
    assert not retried(Completed(data=None))
