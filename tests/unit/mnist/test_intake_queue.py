"""`mnist.intake` on a labelling queue's export, and `mnist.exports` writing one: file names
that are prediction ids, each sample's file kept through the NaN policy, unlabelled/ counted
and left; PNGs read back pixel for pixel; an export all or nothing."""

import numpy as np
import pytest

from mnist import exports, intake
from mnist.errors import MnistError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("123456789.png", 123456789),
        ("dir/42.PNG", 42),
        ("0.png", None),
        ("12a.png", None),
        ("12.jpg", None),
        ("١٢.png", None),  # Arabic-Indic digits: isdigit, not an id
        (f"{2**63}.png", None),
        ("", None),
    ],
)
def test_prediction_ids_are_digits_named_png(name, expected):
    assert intake.prediction_id(name) == expected


def test_each_sample_keeps_its_file_through_the_policy(tmp_path, mnist_data):
    images, labels = mnist_data.test.images[:6], mnist_data.test.labels[:6]
    root = tmp_path / "sorted"
    exports.write(
        root,
        {f"{labels[i]}/{1000 + i}.png": images[i] for i in range(4)}
        | {f"unlabelled/{1000 + i}.png": images[i] for i in range(4, 6)},
        [str(d) for d in range(10)],
    )
    (root / "unlabelled" / "notes.txt").write_text("not counted")
    for hidden in ("unlabelled/._1004.png", f"{labels[0]}/.DS_Store", f"{labels[0]}/._1000.png"):
        (root / hidden).write_bytes(b"a file manager's")  # left alone, never rejected
    rows = np.column_stack([[3, 12], images[:2].reshape(2, -1)]).astype(float)
    np.savetxt(tmp_path / "rows.csv", rows, delimiter=",", fmt="%g")  # row 2: label 12, dropped
    found = intake.read([tmp_path / "rows.csv", root], policy="drop", queue=True)
    assert found.unlabelled == 2 and len(found.labels) == 5
    assert [what for what, _ in found.rejected] == ["1 sample(s)"]  # the CSV's label 12 only
    assert found.files[0] == "" and [f.split("/")[-1] for f in found.files[1:]] == [
        f"{1000 + i}.png" for i in sorted(range(4), key=lambda i: (labels[i], i))
    ]
    assert found.prediction_ids() == [None, *(int(f[-8:-4]) for f in found.files[1:])]
    for image, label, name in zip(found.images[1:], found.labels[1:], found.files[1:], strict=True):
        i = int(name[-8:-4]) - 1000
        assert label == labels[i] and np.array_equal(image, images[i])  # pixel for pixel


def test_without_queue_unlabelled_is_a_stray_folder(tmp_path, mnist_data):
    root = tmp_path / "sorted"
    exports.write(
        root, {"3/1.png": mnist_data.test.images[0], "unlabelled/2.png": mnist_data.test.images[1]}
    )
    with pytest.raises(MnistError, match="unlabelled: not a digit folder 0-9"):
        intake.read([root])


def test_an_export_refuses_clashes_and_leaves_nothing_on_error(tmp_path, mnist_data):
    images = mnist_data.test.images[:3]
    dest = tmp_path / "out"
    exports.write(dest, {"a/1.png": images[0]})
    with pytest.raises(MnistError, match=r"a/1.png exists \(1 file\(s\) would be overwritten\)"):
        exports.write(dest, {"a/1.png": images[1], "b/2.png": images[2]})
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["a", "a/1.png"]
    with pytest.raises(MnistError, match="expected a 28x28 image"):  # fails half way
        exports.write(dest, {"b/2.png": images[2], "c/3.png": images[2][:5]}, ["d"])
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["a", "a/1.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_merging_into_an_existing_folder_undoes_itself_on_a_late_clash(tmp_path, mnist_data):
    images = mnist_data.test.images[:2]
    dest = tmp_path / "out"
    dest.mkdir()
    staging = tmp_path / "staged"
    exports.write(staging, {"x/1.png": images[0], "y/2.png": images[1]})
    (dest / "y").mkdir()
    (dest / "y" / "2.png").write_bytes(b"appeared meanwhile")
    with pytest.raises(FileExistsError):
        exports._merge(staging, dest, ["x/1.png", "y/2.png"], ["z"])
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["y", "y/2.png"]
    assert (dest / "y" / "2.png").read_bytes() == b"appeared meanwhile"
