"""Model cards on constructed data: the calibration error, the robustness transforms, and a
rendered card that holds every section with the numbers it was given."""

import json

import numpy as np
import pytest

from mnist import calibration, model_card, robustness
from mnist.evaluation import Evaluation, confusion_matrix


def _confident(confidence: float, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose top class (always 0) has `confidence`; labels 0 where `correct`."""
    p = np.full((len(correct), 10), (1 - confidence) / 9)
    p[:, 0] = confidence
    return p, np.where(correct, 0, 1)


def test_ece_is_the_gap_between_confidence_and_accuracy():
    probabilities, labels = _confident(0.8, np.arange(10) < 6)  # 80% sure, 60% right
    assert calibration.expected_calibration_error(probabilities, labels) == pytest.approx(0.2)


def test_ece_weighs_each_bin_by_its_share():
    # 4 images at 0.95, all right (gap 0.05); 6 at 0.55, half right (gap 0.05): ECE 0.05.
    high, high_labels = _confident(0.95, np.ones(4, bool))
    low, low_labels = _confident(0.55, np.arange(6) < 3)
    result = calibration.reliability(
        np.vstack([high, low]), np.concatenate([high_labels, low_labels])
    )
    assert result.ece == pytest.approx(0.05)
    assert result.bins == calibration.BINS == 15
    assert result.counts.sum() == 10 and np.count_nonzero(result.counts) == 2
    assert result.mean_confidence == pytest.approx(0.4 * 0.95 + 0.6 * 0.55)


def test_a_calibrated_model_has_no_error():
    probabilities, labels = _confident(1.0, np.ones(5, bool))
    assert calibration.expected_calibration_error(probabilities, labels) == 0.0


def _dot() -> np.ndarray:
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 10, 12] = 255
    return image


def test_shift_moves_right_and_down_with_zero_fill():
    moved = robustness.shift(_dot(), 3)
    assert moved[0, 13, 15] == 255 and moved.sum() == 255
    edge = np.zeros((1, 28, 28), np.float32)
    edge[0, 27, 27] = 9
    assert robustness.shift(edge, 1).sum() == 0  # pushed out, nothing wraps round
    assert robustness.shift(_dot()[..., None], 2).shape == (1, 28, 28, 1)


def test_thicken_and_thin_change_stroke_width():
    bar = np.zeros((1, 28, 28), np.float32)
    bar[0, 5:20, 13:16] = 1  # a stroke 3 pixels wide
    assert robustness.thicken(bar)[0, 10].sum() == 5
    assert robustness.thin(bar)[0, 10].sum() == 1
    assert robustness.thin(_dot()).sum() == 0  # a one-pixel stroke vanishes


def test_rotate_turns_anticlockwise_about_the_centre():
    bar = np.zeros((1, 28, 28), np.float32)
    bar[0, 13:15, 14:27] = 1  # a horizontal stroke to the right of the centre
    turned = robustness.rotate(bar, 90)
    rows, cols = np.nonzero(turned[0] > 0.5)
    assert rows.max() < 14 and cols.min() >= 12 and cols.max() <= 15  # now it points up
    assert robustness.rotate(bar, 0).sum() == pytest.approx(bar.sum())


def test_measure_reports_each_transform():
    images = np.zeros((4, 28, 28), np.float32)
    images[:, 0, 0] = 1  # a pixel in the corner: gone after any shift

    def corner(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), 10))
        out[np.arange(len(x)), np.where(x[:, 0, 0] > 0, 7, 1)] = 1
        return out

    checks = robustness.measure(corner, images, np.full(4, 7))
    found = {c.name: c.accuracy for c in checks}
    assert list(found) == [robustness.UNCHANGED, *robustness.TRANSFORMS]
    assert found[robustness.UNCHANGED] == 1.0
    assert found["shifted 1 px right and down"] == 0.0
    assert found["thickened (3x3 dilation)"] == 1.0


def _evaluation(n: int = 200, groups: np.ndarray | None = None) -> Evaluation:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    probabilities = rng.dirichlet(np.ones(10) * 0.2, n)
    probabilities[np.arange(n), labels] += 1.5  # mostly right
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    accuracy = float(np.mean(predicted == labels))
    confusion = confusion_matrix(labels, predicted)
    return Evaluation(0.3, accuracy, n, probabilities, labels, confusion, groups)


RECIPE = {
    "model": "small",
    "epochs": 1,
    "batch_size": 128,
    "learning_rate": 0.01,
    "adam_beta_1": 0.7,
    "adam_beta_2": 0.9,
    "schedule": "one-cycle",
    "augment": False,
    "label_smoothing": 0.0,
    "seed": 42,
    "validation_split": 0.1,
    "train_limit": 3000,
    "test_limit": 1000,
    "added_share": 0.1,
    "profile": "fast",
    "warm_start": "none (trained from scratch)",
}
DATA = {
    "mnist_source": "/data/train-images-idx3-ubyte.gz",
    "mnist_digest": "ab" * 32,
    "mnist_read": 3000,
    "validation": 300,
    "test_read": 200,
    "trained_on": 2790,
    "added": {
        "digest": "cd" * 32,
        "train": 80,
        "holdout": 20,
        "repeats": 4,
        "batches": [{"id": 1, "source": "scanner-a", "samples": 100, "review": "trusted"}],
    },
}


def test_a_card_holds_every_section_with_its_numbers():
    test = _evaluation()
    holdout = _evaluation(40, np.array(["scanner-a", "drawn"] * 20, dtype=object))
    images = np.zeros((200, 28, 28, 1), np.float32)

    def model(x: np.ndarray) -> np.ndarray:  # right on the first half only, under any transform
        return np.eye(10)[np.where(np.arange(len(x)) < 100, test.labels[: len(x)], 11 % 10)]

    facts, figures = model_card.assemble(model, images, test, holdout, RECIPE, DATA)
    assert set(figures) == set(model_card.FIGURES)
    facts = json.loads(json.dumps(facts))  # what the gate reads back
    tags = {"run_id": "r1", "git_commit": "0123456789abcdef", "inputs_digest": "ef" * 32}
    tags |= {"onnx": "yes", "onnx_same_digit": "1.0000", "onnx_max_abs_diff": "3.1e-07"}
    tags |= {"onnx_checked_on": "10000"}
    card = model_card.render(facts, tags, "mnist-cnn", "3")
    headings = [line[3:] for line in card.splitlines() if line.startswith("## ")]
    assert headings == list(model_card.SECTIONS)
    assert card.startswith("# Model card: mnist-cnn v3")
    assert f"**{test.accuracy:.4f}** on 200 images" in card
    row = test.per_class().iloc[4]
    assert f"| 4 | {row.precision:.4f} | {row.recall:.4f} | {row.f1:.4f} |" in card
    for source, accuracy, count in model_card.by_source(holdout):
        assert f"| {source} | {accuracy:.4f} | {count} |" in card
    ece = calibration.expected_calibration_error(test.probabilities, test.labels)
    assert f"error **{ece:.4f}** (15 equal-width bins, 200 test images)" in card
    assert "| rotated 20 degrees |" in card and "scanner-a (100 samples, trusted)" in card
    assert "same digit for 1.0000" in card and "3.1e-07" in card
    assert "Not judged yet" in card
    assert len(card) < model_card.DESCRIPTION_LIMIT

    tags |= {
        "decision": "rejected",
        "decision_reason": "test accuracy 0.5000 is below the floor 0.99",
        "compared_to_version": "2",
        "champion_accuracy": "0.9900",
        "challenger_accuracy": "0.5000",
    }
    judged = model_card.render(facts, tags | {"onnx": "no: export failed"}, "mnist-cnn", "3")
    assert "**rejected**: test accuracy 0.5000 is below the floor 0.99" in judged
    assert "champion v2 (test 0.9900" in judged and "No ONNX copy (export failed)" in judged


def card_facts() -> dict:
    test = _evaluation()
    holdout = _evaluation(40, np.array(["scanner-a", "drawn"] * 20, dtype=object))
    facts, _ = model_card.assemble(
        lambda x: np.eye(10)[np.zeros(len(x), int)],
        np.zeros((200, 28, 28, 1), np.float32),
        test,
        holdout,
        RECIPE,
        DATA,
    )
    return json.loads(json.dumps(facts))


JUDGED = {
    "run_id": "0123456789abcdef0123456789abcdef",
    "git_commit": "0123456789abcdef",
    "inputs_digest": "ef" * 32,
    "onnx": "yes",
    "onnx_same_digit": "1.0000",
    "onnx_max_abs_diff": "3.1e-07",
    "onnx_checked_on": "10000",
    "decision": "promoted",
    "decision_reason": "test accuracy 0.9912 beats champion v7's 0.9901 by 0.0011 >= 0.001",
    "compared_to_version": "7",
    "champion_accuracy": "0.9901",
    "champion_holdout_accuracy": "0.9500",
    "challenger_accuracy": "0.9912",
    "challenger_holdout_accuracy": "0.9600",
    "floor": "0.97",
    "margin": "0.001",
}


def _headings(card: str) -> list[str]:
    return [line[3:] for line in card.splitlines() if line.startswith("## ")]


def test_sixty_added_batches_are_summed_up_and_the_card_fits_the_registry():
    facts = card_facts()
    sources = ["scanner-a", "scanner-b", "drawn", "forms-2023", "post-office", "kiosk", "tablet"]
    facts["data"]["added"]["batches"] = [
        {"id": i, "source": sources[i % 7], "samples": 100 + i, "review": "trusted"}
        for i in range(1, 61)
    ]
    card = model_card.render(facts, JUDGED, "mnist-cnn", "123")
    assert len(card) <= model_card.DESCRIPTION_LIMIT
    assert _headings(card) == list(model_card.SECTIONS)
    assert model_card.description(card, "r") == card  # nothing cut
    assert (
        "#60 post-office (160 samples, trusted)" in card and "#51 " in card and "#50 " not in card
    )
    older = sum(100 + i for i in range(1, 51))
    assert f"and 50 older batches ({older:,} samples) from " in card
    assert "and 2 more" in card  # 7 sources, 5 named
    assert "same digit for 1.0000" in card and "**promoted**" in card


def test_a_card_too_long_for_the_registry_keeps_every_section():
    facts = card_facts()
    facts["holdout"]["by_source"] = [[f"source-{i:03}", 0.95, 40] for i in range(200)]
    card = model_card.render(facts, JUDGED, "mnist-cnn", "3")
    assert len(card) > model_card.DESCRIPTION_LIMIT  # the holdout table alone is ~5,000
    short = model_card.description(card, "run-1")
    assert len(short) <= model_card.DESCRIPTION_LIMIT
    assert _headings(short) == list(model_card.SECTIONS)
    assert "| source-000 | 0.9500 | 40 |" in short and "| source-199 |" not in short
    for tail in ("same digit for 1.0000", "**promoted**", "centred by its centre of mass"):
        assert tail in short  # the last sections survive whole
    assert short.endswith("the whole card: run `run-1`, `card/`.*\n")
    assert model_card.description("small", "r") == "small"


def test_a_single_long_line_is_cut_at_a_word():
    card = "# Model card: m v1\n\n## A\n\n" + "word " * 1200 + "\n\n## B\n\nkept\n"
    short = model_card.description(card, "r")
    assert len(short) <= model_card.DESCRIPTION_LIMIT and _headings(short) == ["A", "B"]
    assert "word\n\n…\n\n## B\n\nkept" in short


def test_the_recipe_line_names_elastic_distortion_only_where_it_was_used():
    line = model_card._recipe  # the card's recipe sentence
    plain = {"recipe": RECIPE}  # a card from before the knob: no `elastic`
    bent = {"recipe": {**RECIPE, "augment": True, "elastic": 16.0}}
    unused = {"recipe": {**RECIPE, "augment": False, "elastic": 16.0}}
    assert "augment no, label" in line(plain)
    assert "augment yes with elastic distortion 16, label" in line(bent)
    assert "elastic" not in line(unused)
