"""Model cards for real: one short retrain with added data from two sources registers a
version, writes its card (description, `card/` artifacts) and redoes it with the gate's
decision; `mnist registry card` prints it. Real Prefect API, SQLite MLflow store and added-data
store, real MNIST."""

import json
import re

import pytest

from app.cli import main
from flows.retrain import retrain_flow
from mnist import datastore, model_card, registry, robustness
from mnist.settings import GateSettings, TrainConfig
from mnist.tracking import call, client
from tests.conftest import tracking_store
from tests.sources import SOURCE, mirror_writing

pytestmark = pytest.mark.slow

NAME = "card-test"


@pytest.fixture(scope="module")
def carded(prefect_api, mnist_data, mnist_path, tmp_path_factory):
    """One retrain (3,000 MNIST images, 1 epoch) with mirrored digits and plain ones added
    under two sources; the card of the version it registers, as the registry holds it."""
    root = tmp_path_factory.mktemp("card")
    with tracking_store(root):
        store = datastore.Store()
        store.add(*mirror_writing(mnist_data, 0, 100), SOURCE, "test")
        plain = mnist_data.train.images[-300:-200], mnist_data.train.labels[-300:-200]
        store.add(*plain, "plain-scans", "test")
        config = TrainConfig.from_profile(
            data_dir=mnist_path,
            model="small",
            epochs=1,
            train_limit=3000,
            test_limit=1000,
            experiment="card",
            registered_model=NAME,
        )
        held = datastore.Store().snapshot().holdout_sources
        result = retrain_flow(config, GateSettings(floor=0.5))
        assert result.training is not None
        version = registry.get(NAME, result.training.model_version)
        mv = call(client().get_model_version, NAME, version.version)
        run = call(client().get_run, version.run_id)
        files = {f.path for f in call(client().list_artifacts, version.run_id, "card")}
        texts = {
            path: call(client().download_artifacts, version.run_id, path, str(root))
            for path in (f"card/v{version.version}.md", "card/card.json")
        }
        yield dict(
            version=version,
            description=mv.description,
            run=run,
            files=files,
            texts=texts,
            held={s: int((held == s).sum()) for s in set(held)},
        )


def test_the_description_is_a_card_with_every_section(carded):
    card, v = carded["description"], carded["version"]
    headings = [line[3:] for line in card.splitlines() if line.startswith("## ")]
    assert headings == list(model_card.SECTIONS)
    assert card.startswith(f"# Model card: {NAME} v{v.version}")
    assert f"**{v.tags['test_accuracy']}** on 1,000 images" in card
    assert (
        len(re.findall(r"^\| \d \| 0\.\d{4} \| 0\.\d{4} \| 0\.\d{4} \| \d+ \|$", card, re.M)) == 10
    )
    held = carded["held"]
    assert f"**{v.tags['holdout_accuracy']}** on {sum(held.values())} held-out" in card
    for source in (SOURCE, "plain-scans"):
        assert re.search(rf"^\| {source} \| [01]\.\d{{4}} \| {held[source]} \|$", card, re.M)
        assert f" {source} (100 samples, trusted)" in card
    found = re.search(r"calibration error \*\*(0\.\d{4})\*\*", card)
    assert found is not None
    ece = float(found.group(1))
    assert 0 <= ece < 0.2
    for name in robustness.TRANSFORMS:
        assert re.search(
            rf"^\| {re.escape(name)} \| [01]\.\d{{4}} \| [+-]0\.\d{{4}} \|$", card, re.M
        )
    assert "`small`, 1 epoch, batch" in card and "train limit 3000" in card
    assert f"digest `{v.tags['dataset_digest'][:12]}`" in card


def test_the_gate_decision_lands_in_the_card(carded):
    card, v = carded["description"], carded["version"]
    assert v.tags["decision"] == "promoted"
    assert f"**promoted**: {v.tags['decision_reason']}" in card
    assert "Compared with no champion (the first one)" in card
    assert "Not judged yet" not in card
    assert v.tags["card"] == f"yes: card/v{v.version}.md"
    # every logged model gets an ONNX copy unless its export fails: this one must have one
    assert v.tags["onnx"] == "yes"
    assert float(v.tags["onnx_same_digit"]) >= 0.9999
    assert float(v.tags["onnx_max_abs_diff"]) <= 1e-4
    assert (
        f"checked against Keras on {v.tags['onnx_checked_on']} MNIST test images: same digit "
        f"for {v.tags['onnx_same_digit']} of them, largest probability difference "
        f"{v.tags['onnx_max_abs_diff']}." in card
    )


def test_the_card_and_its_figures_are_artifacts_of_the_run(carded):
    v = carded["version"]
    assert carded["files"] >= {
        f"card/v{v.version}.md",
        "card/card.json",
        "card/reliability.png",
        "card/robustness.png",
    }
    with open(carded["texts"][f"card/v{v.version}.md"]) as f:
        assert f.read() == carded["description"]  # the whole card fits the description
    with open(carded["texts"]["card/card.json"]) as f:
        facts = json.load(f)
    assert facts["test"]["samples"] == 1000 and facts["robustness"]["samples"] == 1000
    assert 0 < carded["run"].data.metrics["card_seconds"] < 60


def test_mnist_registry_card_prints_it(carded, capsys):
    v = carded["version"]
    with open(carded["texts"][f"card/v{v.version}.md"]) as f:
        whole = f.read()
    assert main(["registry", "--registered-model", NAME, "card"]) == 0  # the champion
    assert capsys.readouterr().out == whole.rstrip("\n") + "\n"  # card/vN.md, in full
    assert main(["registry", "--registered-model", NAME, "card", v.version]) == 0
    assert "## Known limits" in capsys.readouterr().out
    assert main(["registry", "--registered-model", NAME, "card", "99"]) == 1
    err = capsys.readouterr().err
    assert "has no version 99" in err and len(err.strip().splitlines()) == 1


def test_a_version_without_a_card_says_so(carded, capsys):
    v = carded["version"]
    bare = registry.register(v.source, v.run_id, {}, "no-card-test")
    capsys.readouterr()  # MLflow's words on the registration
    assert main(["registry", "--registered-model", "no-card-test", "card", bare.version]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "no-card-test v1 has no model card: registered before model cards were written"
    )
    assert len(err.splitlines()) == 1
