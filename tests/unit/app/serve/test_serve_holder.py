"""`ModelHolder` without a registry: an alias resolved to its version, a swap only when the
version moved, and a failed refresh that keeps the old model serving and says why."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.serve import ModelHolder, RequestError
from app.serve import holder as holder_module
from mnist.errors import MnistError


@pytest.fixture
def registry(monkeypatch):
    """A stand-in registry (`points["champion"]`: the version the alias names) and model
    loader (`loads`: the URIs loaded, in order)."""
    points, loads = {"champion": "1"}, []

    def get(name, version=None, alias=None):
        if alias is not None and alias not in points:
            raise MnistError(f"model {name!r} has no alias {alias!r}")
        number = points[alias] if alias is not None else version
        return SimpleNamespace(version=number, run_id=f"run-{number}", test_accuracy=0.9)

    def load_runner(uri, runtime="auto", threads=None):
        if "broken" in points:
            raise OSError("disk on fire\nsecond line")
        loads.append(uri)
        return f"model of {uri}"

    monkeypatch.setattr(holder_module.registry, "get", get)
    monkeypatch.setattr(holder_module.tracking, "load_runner", load_runner)
    monkeypatch.setattr(holder_module, "_settle", lambda: None)  # no full collection per test
    return SimpleNamespace(points=points, loads=loads)


def test_an_alias_is_served_as_the_exact_version_it_names(registry):
    holder = ModelHolder("models:/digits@champion")
    assert holder.refresh() is True
    model, info = holder.current()
    assert model == "model of models:/digits/1" and registry.loads == ["models:/digits/1"]
    assert (info.name, info.version, info.alias) == ("digits", "1", "champion")
    assert info.run_id == "run-1" and info.uri == "models:/digits/1"


def test_a_version_or_a_path_is_served_as_written(registry):
    assert ModelHolder("models:/digits/4")._resolve().uri == "models:/digits/4"
    plain = ModelHolder("/models/net.keras")._resolve()
    assert plain.uri == "/models/net.keras" and plain.version is None


def test_a_refresh_swaps_only_when_the_alias_moved(registry):
    holder = ModelHolder("models:/digits@champion")
    holder.refresh()
    assert holder.refresh() is False and len(registry.loads) == 1
    registry.points["champion"] = "2"
    assert holder.refresh() is True
    assert holder.current()[1].version == "2" and registry.loads[-1] == "models:/digits/2"


def test_a_failed_refresh_keeps_the_old_model_and_says_why_in_one_line(registry):
    holder = ModelHolder("models:/digits@champion")
    holder.refresh()
    registry.points.update(champion="2", broken="yes")
    with pytest.raises(MnistError, match="OSError: disk on fire"):
        holder.refresh()
    assert holder.last_error == "OSError: disk on fire"
    assert holder.current()[1].version == "1"
    del registry.points["broken"]
    holder.refresh()
    assert holder.last_error is None and holder.current()[1].version == "2"


def test_no_model_loaded_is_a_503():
    with pytest.raises(RequestError, match="no model loaded") as none:
        ModelHolder("models:/digits@champion").current()
    assert none.value.status == 503
