"""The MLflow pyfunc loader of mnist-pipeline models: the logged Keras model behind a fast
`predict`.

MLflow's TensorFlow flavour answers `pyfunc.predict` with `keras.Model.predict`, which builds
a data pipeline on every call: about 45 ms for one image. This loader runs the same model
through `predict_on_batch` (one compiled graph call per chunk), or, when the model has its
checked ONNX copy (`model.onnx`) and ONNX Runtime is installed, runs that copy without
importing TensorFlow at all. It ships inside every logged model (MLflow `code_paths`), so
`mlflow.pyfunc.load_model` and `mlflow models serve` use it without mnist-pipeline installed;
`mlflow.tensorflow.load_model` still gives the Keras model. It imports only ONNX Runtime or
Keras, NumPy and pandas (never mnist-pipeline), loads the Keras file in safe mode, and lets the
ONNX copy read no external data files.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np

CHUNK = 2048
"""Images per graph call: large enough to keep both cores busy, small enough for memory."""
ONNX_FILE = "model.onnx"
"""The ONNX copy's name, beside `model.keras` in a logged model's data directory (defined here,
in the file every logged model ships, and imported from here by `mnist.onnx_model` and
`mnist.tracking.model_files`)."""
EXTERNAL_DATA_FOLDER = "session.model_external_initializers_file_folder_path"
"""ONNX Runtime's setting for where tensors stored in external files are read from. A model
loaded from bytes would read them relative to the working directory: pointed at an empty
temporary folder, any such tensor fails to load (and one whose path leaves it is refused)."""


class KerasDigits:
    """`predict(pixels)` -> probabilities (N, 10), as MLflow's TensorFlow flavour returns them:
    an array for an array, a DataFrame with the same index for a DataFrame."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.input_shape = tuple(model.input_shape[1:])

    def get_raw_model(self) -> Any:
        return self.model

    def answer(self, x: np.ndarray) -> np.ndarray:
        return probabilities(self.model, x.reshape(-1, *self.input_shape))

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        frame = isinstance(data, pd.DataFrame)
        if isinstance(data, dict) and len(data) == 1:  # a named tensor input
            data = next(iter(data.values()))
        out = self.answer(np.asarray(data.to_numpy() if frame else data, dtype=np.float32))
        return pd.DataFrame(out, index=data.index) if frame else out


class OnnxDigits(KerasDigits):
    """`KerasDigits` answered by the model's ONNX copy in ONNX Runtime (raw pixels
    (N, 28, 28) -> (N, 10)); `get_raw_model` gives the ONNX Runtime session."""

    def __init__(self, session: Any) -> None:
        self.model = session
        self.input_shape = (28, 28)
        self.input_name = session.get_inputs()[0].name

    def answer(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x.reshape(-1, *self.input_shape))
        chunks = [
            np.asarray(self.model.run(None, {self.input_name: x[i : i + CHUNK]})[0])
            for i in range(0, len(x), CHUNK)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, 10), np.float32)


def probabilities(model: Any, x: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """(N, 10) through `predict_on_batch`, `chunk` images a call: one compiled graph call, about
    1 ms for one image, where `predict` builds a data pipeline per call and an eager call takes
    10 ms. Also what `mnist.evaluation` and `mnist serve` predict with."""
    chunks = [np.asarray(model.predict_on_batch(x[i : i + chunk])) for i in range(0, len(x), chunk)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 10), np.float32)


def onnx_session(content: bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime session (on the CPU) of a model's bytes that reads no external data
    files; `threads` caps its threads per call (default: one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings on stderr
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory(prefix="mnist-onnx-") as empty:
        options.add_session_config_entry(EXTERNAL_DATA_FOLDER, empty)
        return ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])


def _load_pyfunc(path: str) -> KerasDigits:
    """Called by `mlflow.pyfunc.load_model` with the flavour's data directory: the ONNX copy
    when there is one and ONNX Runtime loads it, else (with a warning when the copy is there
    but cannot run) the Keras model."""
    onnx = os.path.join(path, ONNX_FILE)
    if os.path.isfile(onnx) and not os.path.islink(onnx):
        try:
            with open(onnx, "rb") as file:
                return OnnxDigits(onnx_session(file.read()))
        except Exception as exc:  # no ONNX Runtime here, or a copy it cannot run: Keras answers
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            logging.getLogger(__name__).warning(
                "the ONNX copy %s cannot run (%s: %s); answering through Keras",
                onnx,
                type(exc).__name__,
                detail,
            )
    import keras

    return KerasDigits(keras.saving.load_model(os.path.join(path, "model.keras"), safe_mode=True))
