"""The runtime of `mnist serve`: the holder loads (and reloads) each version with the runtime
and ONNX threads it was given, and /healthz says whether TensorFlow is in the process."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from app.serve import ModelHolder
from app.serve import holder as holder_module


def test_every_version_is_loaded_with_the_runtime_and_threads_given(monkeypatch):
    points, loads = {"champion": "1"}, []

    def get(name, version=None, alias=None):
        return SimpleNamespace(version=points[alias or "champion"], run_id="r", test_accuracy=0.9)

    def load_runner(uri, runtime="auto", threads=None):
        loads.append((uri, runtime, threads))
        return SimpleNamespace(runtime=runtime)

    monkeypatch.setattr(holder_module.registry, "get", get)
    monkeypatch.setattr(holder_module.tracking, "load_runner", load_runner)
    monkeypatch.setattr(holder_module, "_settle", lambda: None)
    holder = ModelHolder("models:/digits@champion", "keras", onnx_threads=1)
    holder.refresh()
    points["champion"] = "2"
    holder.refresh()
    assert loads == [("models:/digits/1", "keras", 1), ("models:/digits/2", "keras", 1)]
    ModelHolder("models:/digits@champion", "auto", onnx_threads=0).refresh()
    assert loads[-1] == ("models:/digits/2", "auto", None)  # 0: ONNX Runtime's own choice


def test_tensorflow_loaded_reads_this_process(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert holder_module.tensorflow_loaded() is False
    monkeypatch.setitem(sys.modules, "tensorflow", SimpleNamespace())
    assert holder_module.tensorflow_loaded() is True
