"""Model cards: what a registered version is for, what it learnt from, how well it does
(per digit, per added-data source, calibration, robustness), what the gate decided and its
known limits, as compact markdown for the version's registry description.

`assemble` measures (once, at registration) and returns the card's facts as JSON-ready data;
`render` turns facts and the version's tags (lineage, decision, ONNX check) into markdown, so
the gate can redo the card from stored facts without evaluating anything again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mnist import calibration, robustness
from mnist.evaluation import Evaluation

SECTIONS = (
    "Intended use",
    "Training data",
    "Recipe",
    "MNIST test accuracy",
    "Added holdout by source",
    "Calibration",
    "Robustness",
    "Gate decision",
    "ONNX copy",
    "Known limits",
)
"""Every card's sections, in order (`## NAME`)."""

DESCRIPTION_LIMIT = 5000
"""MLflow keeps a model version's description in a VARCHAR(5000) (`model_versions`)."""
ROBUSTNESS_IMAGES = 2000
"""Test images the robustness table uses: nine passes over 2,000 cost about 2 s on 2 cores
for the default network, nine over all 10,000 about 10 s."""
FIGURES = ("reliability.png", "robustness.png")
BATCHES_LISTED = 10
"""Added-data batches a card lists one by one (the newest); older ones are summed up."""
SOURCES_LISTED = 5
"""Sources named in that summary (the largest); the rest are counted."""

Facts = dict[str, Any]


def by_source(result: Evaluation) -> list[list[Any]]:
    """[source, accuracy, images] for each source of a labelled split, one row if it has one."""
    groups = result.groups if result.groups is not None else np.full(result.samples, "-")
    hits = result.predicted == result.labels
    return [
        [str(g), float(hits[groups == g].mean()), int((groups == g).sum())]
        for g in sorted({str(g) for g in groups})
    ]


def assemble(
    probabilities: Callable[[np.ndarray], np.ndarray],
    test_x: np.ndarray,
    test: Evaluation,
    holdout: Evaluation | None,
    recipe: dict[str, Any],
    data: dict[str, Any],
) -> tuple[Facts, dict[str, Any]]:
    """The card's facts and figures (by file name). Calibration and the per-class table come
    from `test` (already evaluated); robustness runs `probabilities` on the first
    ROBUSTNESS_IMAGES of `test_x` (model-ready images) under each transform."""
    rel = calibration.reliability(test.probabilities, test.labels)
    few = slice(0, ROBUSTNESS_IMAGES)
    checks = robustness.measure(probabilities, test_x[few], test.labels[few])
    per_class = test.per_class()
    facts: Facts = {
        "recipe": recipe,
        "data": data,
        "test": {
            "accuracy": test.accuracy,
            "loss": test.loss,
            "samples": test.samples,
            "per_class": per_class.to_numpy().tolist(),
        },
        "holdout": None
        if holdout is None
        else {
            "accuracy": holdout.accuracy,
            "samples": holdout.samples,
            "by_source": by_source(holdout),
        },
        "calibration": {
            "ece": rel.ece,
            "bins": rel.bins,
            "samples": rel.samples,
            "confidence": rel.mean_confidence,
        },
        "robustness": {
            "samples": len(test_x[few]),
            "rows": [[c.name, c.accuracy] for c in checks],
        },
    }
    figures = {
        "reliability.png": calibration.reliability_diagram(rel, "MNIST test images"),
        "robustness.png": robustness.examples(test_x[few]),
    }
    return facts, figures


def _n(value: Any) -> str:
    return f"{int(value):,}"


def _short(digest: str | None) -> str:
    return f"`{digest[:12]}`" if digest and digest != "none" else "none"


def _data(facts: Facts, tags: dict[str, str]) -> str:
    d = facts["data"]
    lines = [
        f"- **MNIST** ({d['mnist_source']}), digest {_short(d['mnist_digest'])}: "
        f"{_n(d['mnist_read'])} training images read, {_n(d['validation'])} of them held out "
        f"for validation; {_n(d['test_read'])} test images judged it.",
    ]
    added = d.get("added") or {}
    if not added.get("batches"):
        lines.append("- **Added data**: none.")
    else:
        batches = _batches(added["batches"])
        lines.append(
            f"- **Added data**, snapshot {_short(added['digest'])}: {_n(added['train'])} "
            f"training samples (each seen {added['repeats']}x an epoch), "
            f"{_n(added['holdout'])} held out. Batches: {batches}."
        )
    lines.append(
        f"- **Lineage**: {_n(d['trained_on'])} images an epoch; inputs "
        f"{_short(tags.get('inputs_digest'))}, code {_short(tags.get('git_commit'))}, "
        f"run `{tags.get('run_id', '-')}`."
    )
    return "\n".join(lines)


def _batches(batches: list[dict[str, Any]]) -> str:
    """The newest BATCHES_LISTED batches one by one, the older ones summed up by source."""
    newest = sorted(batches, key=lambda b: b["id"], reverse=True)
    shown, older = newest[:BATCHES_LISTED], newest[BATCHES_LISTED:]
    text = "; ".join(
        f"#{b['id']} {b['source']} ({_n(b['samples'])} samples, {b['review']})"
        for b in sorted(shown, key=lambda b: b["id"])
    )
    if not older:
        return text
    per_source: dict[str, int] = {}
    for b in older:
        per_source[b["source"]] = per_source.get(b["source"], 0) + int(b["samples"])
    biggest = sorted(per_source, key=lambda s: (-per_source[s], s))
    sources = ", ".join(biggest[:SOURCES_LISTED])
    if len(biggest) > SOURCES_LISTED:
        sources += f" and {len(biggest) - SOURCES_LISTED} more"
    total = sum(per_source.values())
    return f"{text}; and {len(older)} older batches ({_n(total)} samples) from {sources}"


def _elastic(recipe: dict) -> str:
    """The elastic distortion of an augmented recipe that has one (older cards: none)."""
    strength = float(recipe.get("elastic") or 0)
    return f" with elastic distortion {strength:g}" if recipe["augment"] and strength else ""


def _recipe(facts: Facts) -> str:
    r = facts["recipe"]
    epochs = f"{r['epochs']} epoch{'s' if r['epochs'] != 1 else ''}"
    return (
        f"`{r['model']}`, {epochs}, batch {r['batch_size']}, learning rate "
        f"{r['learning_rate']} ({r['schedule']}), Adam betas "
        f"{r['adam_beta_1']}/{r['adam_beta_2']}, "
        f"augment {'yes' if r['augment'] else 'no'}{_elastic(r)}, label smoothing "
        f"{r['label_smoothing']}, "
        f"seed {r['seed']}, validation split {r['validation_split']}, train limit "
        f"{r['train_limit'] or 'none'}, test limit {r['test_limit'] or 'none'}, added share "
        f"{r['added_share']}; warm start: {r['warm_start']}. Profile `{r['profile']}`."
        + (f" The model is {r['origin']}." if r.get("origin") else "")
    )


def _test(facts: Facts) -> str:
    t = facts["test"]
    rows = "\n".join(
        f"| {int(d)} | {p:.4f} | {r:.4f} | {f:.4f} | {int(s)} |" for d, p, r, f, s in t["per_class"]
    )
    worst = min(t["per_class"], key=lambda row: row[3])
    return (
        f"**{t['accuracy']:.4f}** on {_n(t['samples'])} images (loss {t['loss']:.4f}); weakest "
        f"digit {int(worst[0])} (F1 {worst[3]:.4f}).\n\n"
        f"| digit | precision | recall | F1 | images |\n| --- | --- | --- | --- | --- |\n{rows}"
    )


def _holdout(facts: Facts) -> str:
    h = facts.get("holdout")
    if not h:
        return "No added data was held out: nothing to report."
    rows = "\n".join(f"| {s} | {a:.4f} | {n} |" for s, a, n in h["by_source"])
    return (
        f"**{h['accuracy']:.4f}** on {_n(h['samples'])} held-out added images.\n\n"
        f"| source | accuracy | images |\n| --- | --- | --- |\n{rows}"
    )


def _calibration(facts: Facts) -> str:
    c, t = facts["calibration"], facts["test"]
    over = c["confidence"] - t["accuracy"]
    lean = "overconfident" if over > 0 else "underconfident"
    return (
        f"Expected calibration error **{c['ece']:.4f}** ({c['bins']} equal-width bins, "
        f"{_n(c['samples'])} test images): mean confidence {c['confidence']:.4f} against "
        f"accuracy {t['accuracy']:.4f} ({lean} by {abs(over):.4f}). "
        "Reliability diagram: `card/reliability.png`."
    )


def _robustness(facts: Facts) -> str:
    r = facts["robustness"]
    base = r["rows"][0][1]
    rows = "\n".join(
        f"| {name} | {acc:.4f} | {acc - base:+.4f} |" if i else f"| {name} | {acc:.4f} | |"
        for i, (name, acc) in enumerate(r["rows"])
    )
    return (
        f"On the first {_n(r['samples'])} test images (examples: `card/robustness.png`).\n\n"
        f"| test digits | accuracy | change |\n| --- | --- | --- |\n{rows}"
    )


def _gate(tags: dict[str, str]) -> str:
    if "decision" not in tags:
        return (
            "Not judged yet: `mnist retrain` runs the champion gate; a version registered by "
            "`mnist train` is judged by none."
        )
    against = tags.get("compared_to_version", "none")
    versus = (
        "no champion (the first one)"
        if against == "none"
        else f"champion v{against} (test {tags.get('champion_accuracy', '-')}, holdout "
        f"{tags.get('champion_holdout_accuracy', '-')})"
    )
    return (
        f"**{tags['decision']}**: {tags.get('decision_reason', '-')}.\n\n"
        f"Compared with {versus}; this version scored test "
        f"{tags.get('challenger_accuracy', '-')}, holdout "
        f"{tags.get('challenger_holdout_accuracy', '-')} (floor {tags.get('floor', '-')}, "
        f"margin {tags.get('margin', '-')})."
    )


def _onnx(tags: dict[str, str]) -> str:
    onnx = tags.get("onnx")
    if onnx is None:
        return "No ONNX copy: the model was logged before ONNX copies were made; Keras serves it."
    if onnx != "yes":
        return f"No ONNX copy ({onnx.removeprefix('no: ')}); Keras serves it."
    return (
        f"`data/model.onnx`, checked against Keras on {tags.get('onnx_checked_on', '-')} MNIST "
        f"test images: same digit for {tags.get('onnx_same_digit', '-')} of them, largest "
        f"probability difference {tags.get('onnx_max_abs_diff', '-')}."
    )


def _limits(facts: Facts) -> str:
    rows = dict(facts["robustness"]["rows"])
    base = rows.pop(robustness.UNCHANGED)
    worst = sorted(rows.items(), key=lambda r: r[1])[:3]
    falls = ", ".join(f"{acc:.4f} {name}" for name, acc in worst)
    return "\n".join(
        [
            "- One white digit on a black background, 28x28, scaled into a 20x20 box and centred "
            "by its centre of mass, as MNIST's. `mnist predict` and `mnist serve` prepare larger "
            "pictures that way (inverting a light background), but take a 28x28 image as it is.",
            f"- Framing matters: from {base:.4f}, accuracy falls to {falls} (see Robustness).",
            "- It always answers a digit 0-9, even for a letter, a blank or several digits: low "
            "confidence is the only sign, and the confidence is calibrated on MNIST only.",
            "- MNIST's writers (US Census staff and students, 1990s) and the added sources above "
            "are all it knows; other hands and scanners may do worse than these figures.",
        ]
    )


def render(facts: Facts, tags: dict[str, str], name: str, version: str) -> str:
    """The card as markdown: the facts of `assemble` and the version's current tags."""
    bodies = {
        "Intended use": "Reads one handwritten digit (0-9) from a small greyscale picture: "
        "forms, postal codes, the drawing page of `mnist serve`. Not for letters, several "
        "digits at once, photos of scenes, or decisions about people without a human check.",
        "Training data": _data(facts, tags),
        "Recipe": _recipe(facts),
        "MNIST test accuracy": _test(facts),
        "Added holdout by source": _holdout(facts),
        "Calibration": _calibration(facts),
        "Robustness": _robustness(facts),
        "Gate decision": _gate(tags),
        "ONNX copy": _onnx(tags),
        "Known limits": _limits(facts),
    }
    text = f"# Model card: {name} v{version}\n\n" + "\n\n".join(
        f"## {title}\n\n{bodies[title]}" for title in SECTIONS
    )
    return text + "\n"


def _split(card: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """The card's title and its sections as (heading line, body lines)."""
    title, *parts = card.rstrip("\n").split("\n\n## ")
    sections = []
    for part in parts:
        heading, _, body = part.partition("\n\n")
        sections.append((f"## {heading}", body.split("\n")))
    return title, sections


def _join(title: str, sections: list[tuple[str, list[str]]], cut: set[int], tail: str) -> str:
    parts = [
        f"{heading}\n\n" + "\n".join(lines) + ("\n\n…" if i in cut else "")
        for i, (heading, lines) in enumerate(sections)
    ]
    return "\n\n".join([title, *parts]) + tail


def description(card: str, run_id: str) -> str:
    """The card as the registry's description: whole when it fits MLflow's column, else with
    its longest sections shortened (whole lines off their ends, marked `…`) until it fits,
    every heading kept, and a pointer to the whole card in the run's artifacts."""
    if len(card) <= DESCRIPTION_LIMIT:
        return card
    tail = f"\n\n*Shortened to fit the registry; the whole card: run `{run_id}`, `card/`.*\n"
    title, sections = _split(card)
    cut: set[int] = set()
    text = _join(title, sections, cut, tail)
    while len(text) > DESCRIPTION_LIMIT:
        i = max(range(len(sections)), key=lambda k: len("\n".join(sections[k][1])))
        lines = sections[i][1]
        if len(lines) > 1:
            lines.pop()
            while len(lines) > 1 and not lines[-1].strip():
                lines.pop()
        elif lines and lines[0]:  # one long line: cut it at a word
            keep = max(0, len(lines[0]) - (len(text) - DESCRIPTION_LIMIT) - 3)
            lines[0] = lines[0][:keep].rsplit(" ", 1)[0] if " " in lines[0][:keep] else ""
        else:  # headings alone do not fit: never the case for SECTIONS
            return text[: DESCRIPTION_LIMIT - len(tail)] + tail
        cut.add(i)
        text = _join(title, sections, cut, tail)
    return text
