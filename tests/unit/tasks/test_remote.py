"""`tasks.remote`: the network a Dask task keeps in its MLflow run, for the driver to average
or publish, on a real SQLite MLflow store."""

import pandas as pd

from mnist import models
from mnist.elastic import ElasticDistortion
from mnist.tracking import Run
from tasks.remote import keep_network, load_network


def test_a_kept_network_comes_back_without_its_augmentation(store, tmp_path):
    net = models.build("small", augment=True, elastic=16.0)
    run = Run.start("remote", "kept", {})
    keep_network(run, net)
    run.log_frame(pd.DataFrame({"epoch": [1], "accuracy": [0.5]}), "history.csv")
    run.end(True)
    back, history = load_network(run.run_id, tmp_path / "scratch")
    assert back.name == "small" and list(history["epoch"]) == [1]
    assert not any(isinstance(layer, ElasticDistortion) for layer in back.layers)
    assert back.count_params() == models.core(net).count_params()
