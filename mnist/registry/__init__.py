"""The MLflow model registry: versions of a registered model, the `champion` alias, its history.

Aliases, never stages. Versions and model references are in `mnist.registry.versions`; the
moves of `champion` (promotion, manual promote, rollback) and their append-only history, which
MLflow does not keep (mlflow#2169), in `mnist.registry.champion`.
"""

from mnist.registry.champion import (
    PROMOTIONS,
    history,
    promote,
    record,
    repair_history,
    rollback,
    set_champion,
)
from mnist.registry.versions import (
    Version,
    champion,
    get,
    lookup,
    register,
    resolve,
    tag_version,
    trained_on,
    versions,
    with_inputs,
)
from mnist.settings import MODEL_NAME

__all__ = [
    "MODEL_NAME",
    "PROMOTIONS",
    "Version",
    "champion",
    "get",
    "history",
    "lookup",
    "promote",
    "record",
    "register",
    "repair_history",
    "resolve",
    "rollback",
    "set_champion",
    "tag_version",
    "trained_on",
    "versions",
    "with_inputs",
]
