"""The champion/challenger rule: score both on the same raw pixels (MNIST test, and the added
data's holdout when there is one), decide, then tag the challenger's version, move the
`champion` alias and append the decision to the history.

Gates of one model run one at a time: the caller holds `lock` around `judge` (and, with a
Prefect server, the global concurrency limit of the same name, `gate_name`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from mnist import evaluation, locks, preprocess, registry, tracking
from mnist.preprocess import Arrays
from mnist.settings import GateSettings

GATE_SUFFIX = "-champion-gate"
GATE_LOCK_GLOB = f"*{GATE_SUFFIX}.lock"
"""The gate locks of every model, in `tracking.state_dir()` (what `mnist doctor` lists)."""


def gate_name(name: str) -> str:
    """The name of model `name`'s gate: its lock file's stem, and its Prefect concurrency limit."""
    return f"{name}{GATE_SUFFIX}"


def gate_lock_path(name: str) -> Path:
    """The file that keeps model `name`'s gate single on this machine (`mnist.locks`)."""
    return tracking.state_dir() / f"{gate_name(name)}.lock"


def gate_locks() -> list[Path]:
    """Every model's gate lock file, by name."""
    return sorted(tracking.state_dir().glob(GATE_LOCK_GLOB))


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on a challenger."""

    promote: bool
    reason: str
    details: dict[str, str] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "promoted" if self.promote else "rejected"


@dataclass(frozen=True)
class Outcome:
    """What a gate decided, on which accuracies, and who is champion after it."""

    decision: Decision
    challenger: registry.Version
    challenger_accuracy: float
    incumbent: registry.Version | None  # the champion the challenger was judged against
    incumbent_accuracy: float | None
    challenger_holdout: float | None = None  # accuracy on the added data's holdout
    incumbent_holdout: float | None = None

    @property
    def compared_to(self) -> str:
        return self.incumbent.version if self.incumbent else "none"

    @property
    def champion_version(self) -> str | None:
        if self.decision.promote:
            return self.challenger.version
        return self.incumbent.version if self.incumbent else None


def decide(
    challenger: float,
    incumbent: float | None,
    gate: GateSettings,
    challenger_holdout: float | None = None,
    incumbent_holdout: float | None = None,
) -> Decision:
    """Promote when the challenger keeps MNIST test at the floor or above, does not lose to the
    champion on the added data's holdout, and beats it by more than the margin on the test or
    on the holdout (a tie on both keeps the champion); with no champion, the floor suffices.
    Every reason names both scores."""
    floor, margin = gate.floor, gate.margin
    details = {
        "challenger_accuracy": f"{challenger:.4f}",
        "floor": str(floor),
        "margin": str(margin),
    }
    if challenger_holdout is not None:
        details["challenger_holdout_accuracy"] = f"{challenger_holdout:.4f}"
    if incumbent is not None:
        details["champion_accuracy"] = f"{incumbent:.4f}"
    holdout = challenger_holdout is not None and incumbent_holdout is not None
    if holdout:
        details["champion_holdout_accuracy"] = f"{incumbent_holdout:.4f}"
    scores = f"test {challenger:.4f}" + (
        f", holdout {challenger_holdout:.4f}" if challenger_holdout is not None else ""
    )
    if incumbent is not None:
        scores += f" against the champion's test {incumbent:.4f}" + (
            f", holdout {incumbent_holdout:.4f}" if holdout else ""
        )
    if challenger < floor:
        return Decision(
            False, f"test accuracy {challenger:.4f} is below the floor {floor} ({scores})", details
        )
    if incumbent is None:
        return Decision(
            True, f"no champion yet; {scores}: the test reaches the floor {floor}", details
        )
    holdout_gain = 0.0
    if challenger_holdout is not None and incumbent_holdout is not None:
        if challenger_holdout < incumbent_holdout:
            return Decision(False, f"loses to the champion on the holdout ({scores})", details)
        holdout_gain = challenger_holdout - incumbent_holdout
    better = [
        what
        for what, gain in (("test", challenger - incumbent), ("holdout", holdout_gain))
        if gain > margin
    ]
    if better:
        reason = (
            f"beats the champion on the {' and '.join(better)} by more than {margin} ({scores})"
        )
        return Decision(True, reason, details)
    return Decision(False, f"does not beat the champion by more than {margin} ({scores})", details)


def score(model_uri: str, splits: list[Arrays]) -> list[float]:
    """Accuracies of a registered (raw-pixel) model on the raw pixels of each split."""
    model = tracking.load_model(model_uri)
    raws = [Arrays(preprocess.unscale(data.x), data.y) for data in splits]
    return [evaluation.evaluate(model, raw).accuracy for raw in raws]


def lock(
    name: str, gate: GateSettings, what: str, on_wait: Callable[[locks.Holder | None, float], None]
) -> AbstractContextManager[None]:
    """One gate at a time per model, on this machine: a lock beside the store that dies with
    its holder, waited for at most `gate.wait_seconds`."""
    return locks.hold(gate_lock_path(name), what, gate.wait_seconds, on_wait)


def judge(
    challenger: registry.Version, test: Arrays, gate: GateSettings, holdout: Arrays | None = None
) -> Outcome:
    """Score the challenger and the current champion on the same images (MNIST test, and the
    added holdout when it has any), decide, and record the decision: tags on the challenger's
    version, the alias moved or not, the history."""
    name = challenger.name
    incumbent = registry.champion(name)
    judged = [test, *([holdout] if holdout is not None and len(holdout) else [])]
    mine = score(challenger.uri, judged)
    theirs: list[float | None] = [*score(incumbent.uri, judged), None] if incumbent else [None] * 2
    mine_holdout = mine[1] if len(mine) > 1 else None
    decision = decide(mine[0], theirs[0], gate, mine_holdout, theirs[1])
    outcome = Outcome(decision, challenger, mine[0], incumbent, theirs[0], mine_holdout, theirs[1])
    tags = {
        "decision": decision.verdict,
        "decision_reason": decision.reason,
        "compared_to_version": outcome.compared_to,
        **decision.details,
    }
    registry.tag_version(name, challenger.version, tags)
    if decision.promote:
        registry.set_champion(name, challenger.version, decision.verdict, decision.reason, tags)
    else:
        previous = incumbent.version if incumbent else None
        registry.record(name, decision.verdict, challenger.version, previous, decision.reason, tags)
    return outcome
