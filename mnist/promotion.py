"""The champion/challenger rule: score both on the same raw test pixels, decide, then tag the
challenger's version, move the `champion` alias and append the decision to the history.

Gates of one model run one at a time: the caller holds `lock` around `judge`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from mnist import evaluation, locks, preprocess, registry, tracking
from mnist.preprocess import Arrays
from mnist.settings import GateSettings


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

    @property
    def compared_to(self) -> str:
        return self.incumbent.version if self.incumbent else "none"

    @property
    def champion_version(self) -> str | None:
        if self.decision.promote:
            return self.challenger.version
        return self.incumbent.version if self.incumbent else None


def decide(challenger: float, incumbent: float | None, gate: GateSettings) -> Decision:
    """Promote when the challenger reaches the floor and beats the champion by more than the
    margin (a tie keeps the champion); with no champion, reaching the floor suffices."""
    floor, margin = gate.floor, gate.margin
    details = {"challenger_accuracy": f"{challenger:.4f}", "floor": str(floor),
               "margin": str(margin)}  # fmt: skip
    if incumbent is not None:
        details["champion_accuracy"] = f"{incumbent:.4f}"
    if challenger < floor:
        reason = f"test accuracy {challenger:.4f} is below the floor {floor}"
        return Decision(False, reason, details)
    if incumbent is None:
        return Decision(
            True, f"no champion yet; {challenger:.4f} reaches the floor {floor}", details
        )
    if challenger - incumbent > margin:
        reason = f"{challenger:.4f} beats the champion's {incumbent:.4f} by more than {margin}"
        return Decision(True, reason, details)
    reason = f"{challenger:.4f} does not beat the champion's {incumbent:.4f} by more than {margin}"
    return Decision(False, reason, details)


def score(model_uri: str, test: Arrays) -> float:
    """Test accuracy of a registered (raw-pixel) model on the raw pixels of `test`."""
    model = tracking.load_model(model_uri)
    raw = Arrays(preprocess.unscale(test.x), test.y)
    return evaluation.evaluate(model, raw).accuracy


def lock(
    name: str, gate: GateSettings, what: str, on_wait: Callable[[locks.Holder | None, float], None]
) -> AbstractContextManager[None]:
    """One gate at a time per model, on this machine: a lock beside the store that dies with
    its holder, waited for at most `gate.wait_seconds`."""
    path = tracking.state_dir() / f"{name}-champion-gate.lock"
    return locks.hold(path, what, gate.wait_seconds, on_wait)


def judge(challenger: registry.Version, test: Arrays, gate: GateSettings) -> Outcome:
    """Score the challenger and the current champion on the same images, decide, and record
    the decision: tags on the challenger's version, the alias moved or not, the history."""
    name = challenger.name
    incumbent = registry.champion(name)
    challenger_accuracy = score(challenger.uri, test)
    incumbent_accuracy = score(incumbent.uri, test) if incumbent else None
    decision = decide(challenger_accuracy, incumbent_accuracy, gate)
    outcome = Outcome(decision, challenger, challenger_accuracy, incumbent, incumbent_accuracy)
    tags = {"decision": decision.verdict, "decision_reason": decision.reason,
            "compared_to_version": outcome.compared_to, **decision.details}  # fmt: skip
    registry.tag_version(name, challenger.version, tags)
    if decision.promote:
        registry.set_champion(name, challenger.version, decision.verdict, decision.reason, tags)
    else:
        previous = incumbent.version if incumbent else None
        registry.record(name, decision.verdict, challenger.version, previous, decision.reason,
                        tags)  # fmt: skip
    return outcome
