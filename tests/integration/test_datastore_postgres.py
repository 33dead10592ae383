"""The added-data store's tests of the unit tier, on a real PostgreSQL server: its advisory
lock, its transactions and its types, where SQLite's differ."""

import pytest

from tests.unit.mnist.test_datastore import (  # noqa: F401  (collected here, on PostgreSQL)
    test_a_removed_batch_leaves_the_snapshot_and_stays_in_the_history,
    test_an_identical_sample_takes_the_split_of_the_first,
    test_an_image_sent_again_with_another_label_stays_in_its_split,
    test_the_holdout_is_stratified_and_no_sample_ever_changes_split,
)


@pytest.fixture
def url(request, postgres) -> str:
    """A fresh database on the session's PostgreSQL server."""
    return postgres.url(f"t{abs(hash(request.node.nodeid))}")
