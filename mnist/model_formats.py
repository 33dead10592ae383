"""A logged model written out for use elsewhere: its ONNX copy, a TensorFlow SavedModel, or a
LiteRT (TensorFlow Lite) flat buffer, each loaded back in its own runtime and compared with
the Keras model before it is declared written.

A copy is whole or absent: the model is downloaded into the system's temporary folder, the
copy written into a staging folder beside the destination (`.NAME.export-PID-XXXX`), checked
there, then moved into place; an existing destination is never overwritten, and a failure on
the way leaves nothing behind. Staging folders that a killed export left (its process gone, or
older than an hour) are swept by the next export to the same name. Importing this module loads
neither NumPy nor the model libraries (`mnist export --help` stays fast).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mnist.errors import MnistError, first_line

if TYPE_CHECKING:
    import keras
    import numpy as np

    from mnist.onnx_model import OnnxCheck

FORMATS = ("onnx", "saved_model", "litert")
"""What `mnist export --format` writes."""
STALE_SECONDS = 3600
"""A staging folder this old is swept even if its process id is alive (reused)."""


@dataclass(frozen=True)
class Written:
    """A copy written to `path`, and how it agreed with Keras when loaded back."""

    path: Path
    format: str
    agreement: OnnxCheck
    source: str  # "the logged ONNX copy" or "exported from Keras"


def check_images(count: int = 32, seed: int = 0) -> np.ndarray:
    """MNIST-like raw pixels (N, 28, 28): mostly black, a bright blob of strokes in the middle."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.zeros((count, 28, 28), np.float32)
    for image in x:
        strokes = rng.integers(6, 22, size=(40, 2))
        image[strokes[:, 0], strokes[:, 1]] = rng.uniform(128, 255, 40)
        image[strokes[:, 0] + 1, strokes[:, 1]] = 255.0
    return x


def _onnx(model: keras.Model, found: Path, target: Path, x: np.ndarray) -> tuple[np.ndarray, str]:
    from mnist.onnx_model import OnnxDigits, export_onnx
    from mnist.tracking.model_files import onnx_copy

    if (logged := onnx_copy(found)) is not None:
        shutil.copyfile(logged, target)
        source = "the logged ONNX copy"
    else:
        export_onnx(model, target)
        source = "exported from Keras"
    return OnnxDigits(target).probabilities(x), source


def _saved_model(
    model: keras.Model, found: Path, target: Path, x: np.ndarray
) -> tuple[np.ndarray, str]:
    import numpy as np
    import tensorflow as tf

    from mnist.onnx_model import quiet

    with quiet():
        model.export(str(target), format="tf_saved_model", verbose=False)
        loaded = tf.saved_model.load(str(target))
        answer = loaded.serve(tf.constant(x))  # pyright: ignore[reportAttributeAccessIssue]
    return np.asarray(answer), "exported from Keras"


def _litert(model: keras.Model, found: Path, target: Path, x: np.ndarray) -> tuple[np.ndarray, str]:
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from mnist.onnx_model import quiet

    with quiet(), tempfile.TemporaryDirectory(prefix="mnist-export-") as scratch:
        model.export(scratch, format="tf_saved_model", verbose=False)
        flat = tf.lite.TFLiteConverter.from_saved_model(scratch).convert()
        target.write_bytes(flat)  # pyright: ignore[reportArgumentType]
    with _no_stderr():  # LiteRT's C++ says "INFO: Created TensorFlow Lite XNNPACK delegate"
        interpreter = Interpreter(model_path=str(target))
        given, answer = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(given["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(given["index"], x)
        interpreter.invoke()
    return np.asarray(interpreter.get_tensor(answer["index"])), "converted from Keras"


@contextlib.contextmanager
def _no_stderr() -> Iterator[None]:
    """The process's file descriptor 2 sent to /dev/null (C++ libraries write there)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


WRITERS: dict[str, Callable[[keras.Model, Path, Path, np.ndarray], tuple[np.ndarray, str]]] = {
    "onnx": _onnx,
    "saved_model": _saved_model,
    "litert": _litert,
}


def write_copy(ref: str, format: str, target: Path) -> Written:
    """Write the model `ref` (what `load_model` accepts) to `target` in `format`, after loading
    it back and comparing it with Keras on `check_images` by the ONNX copy's own rule
    (`OnnxCheck.passed`: the same digit on at least 99.99% of them, so all 32, and every
    probability within 1e-4)."""
    if format not in FORMATS:
        raise MnistError(f"unknown format {format!r}; choose one of: {', '.join(FORMATS)}")
    target = Path(target).expanduser()
    if target.exists() or target.is_symlink():
        raise MnistError(f"{str(target)!r} exists: give a new path (nothing was written)")
    _sweep(target)
    try:
        prefix = f"{_staging(target)}{os.getpid()}-"
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    except OSError as exc:
        raise MnistError(f"cannot write {str(target)!r}: {exc.strerror}") from exc
    try:
        with tempfile.TemporaryDirectory(prefix="mnist-export-") as download:
            written, agreement, source = _write(ref, format, target.name, work, Path(download))
        _move(written, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Written(target, format, agreement, source)


def _write(
    ref: str, format: str, name: str, work: Path, download: Path
) -> tuple[Path, OnnxCheck, str]:
    """The checked copy in `work`, its agreement with Keras, and where it came from."""
    from mnist.mnist_pyfunc import probabilities
    from mnist.onnx_model import compare
    from mnist.tracking.model_files import fetch_model, keras_file, load_keras

    found = fetch_model(ref, download)
    model = load_keras(keras_file(found), ref)
    x = check_images()
    expected = probabilities(model, x)
    written = work / name
    try:
        answers, source = WRITERS[format](model, found, written, x)
    except MnistError:
        raise
    except Exception as exc:  # a converter or runtime fails anywhere inside
        detail = f"{type(exc).__name__}: {first_line(exc)}"
        raise MnistError(f"cannot write {ref!r} as {format}: {detail}") from exc
    agreement = compare(answers.reshape(expected.shape), expected)
    if not agreement.passed:
        raise MnistError(
            f"the {format} copy of {ref!r} disagrees with Keras (same digit "
            f"{agreement.same_digit:.4f}, max |diff| {agreement.max_abs_diff:.1e}); "
            "nothing was written"
        )
    return written, agreement, source


def _staging(target: Path) -> str:
    """The name prefix of the staging folders of exports to `target`."""
    return f".{target.name}.export-"


def _sweep(target: Path) -> None:
    """Remove the staging folders of earlier exports to `target` whose process is gone (killed
    with -9, say) or that are older than `STALE_SECONDS`."""
    prefix = _staging(target)
    with contextlib.suppress(OSError):
        for folder in target.parent.glob(f"{prefix}*"):
            pid = folder.name.removeprefix(prefix).partition("-")[0]
            with contextlib.suppress(OSError):
                old = time.time() - folder.lstat().st_mtime > STALE_SECONDS
                if folder.is_dir() and not folder.is_symlink() and (old or not _alive(pid)):
                    shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: str) -> bool:
    """Whether the process `pid` (a number, else not ours: kept) runs."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def _move(written: Path, target: Path) -> None:
    """Into place without ever overwriting `target`: a file is hard-linked (which fails if
    `target` exists), or where the file system has no hard links, `target` is claimed by
    creating it empty (`O_EXCL`) and then replaced; a directory is claimed by creating
    `target` (`mkdir` fails if it exists), its entries are moved in, and on a failure what was
    moved is removed again."""
    try:
        if written.is_dir():
            os.mkdir(target)
            try:
                for item in written.iterdir():
                    os.rename(item, target / item.name)
            except OSError:
                shutil.rmtree(target, ignore_errors=True)
                raise
        else:
            _move_file(written, target)
    except OSError as exc:
        raise MnistError(f"cannot write {str(target)!r}: {exc.strerror}") from exc


def _move_file(written: Path, target: Path) -> None:
    try:
        os.link(written, target)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:
            raise
    with open(target, "xb"):  # the claim: fails if `target` exists
        pass
    try:
        os.replace(written, target)
    except OSError:
        target.unlink(missing_ok=True)
        raise


NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}
"""What `link` fails with on file systems without hard links (FAT, some FUSE ones)."""
