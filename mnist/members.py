"""Models trained before, taken as an ensemble's members (`mnist ensemble --from-models`):
each traced to the training run that made it, none an ensemble, all learnt from MNIST alone
with one recipe and one split. Checked before anything is loaded or made, so a wrong
reference is one line."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from mnist import registry
from mnist.errors import MnistError
from mnist.recipe import Recipe
from mnist.settings import TrainConfig
from mnist.tracking import call, client

SHARED = ["profile", *Recipe.model_fields, "train_limit", "nan_policy"]
"""What the members must have in common: their recipe and the data they learnt from."""


@dataclass(frozen=True)
class Member:
    """A model as the version it is now (an alias resolved), its run and that run's params."""

    ref: str
    run_id: str
    params: dict[str, str]

    @property
    def seed(self) -> int:
        return int(self.params["seed"])


def _logged(member: Member, knob: str) -> str | None:
    """The member's `knob` as its run logged it; for a knob newer than the run, its default
    (what the run trained with)."""
    if knob in member.params:
        return member.params[knob]
    field = Recipe.model_fields.get(knob)
    return None if field is None or field.is_required() else str(field.default)


def traced(refs: list[str]) -> list[Member]:
    """Each reference traced to its training run; one that is not, is gone, is an ensemble,
    learnt from added data or a warm start, or names a model named already is an error."""
    members: list[Member] = []
    for ref in refs:
        resolved = registry.resolve(ref)
        run_id = registry.source_run(resolved)
        run = call(client().get_run, run_id, missing=f"{ref}: its run {run_id} is gone")
        params, tags = dict(run.data.params), run.data.tags
        if "ensemble.members" in tags:
            raise MnistError(f"{ref}: an ensemble already; name its members' models instead")
        if not {"model", "seed"} <= params.keys():
            raise MnistError(f"{ref}: run {run_id} logged no recipe; it is not a training run")
        if tags.get("added_batches", "none") != "none":
            raise MnistError(f"{ref}: learnt from added data; members learn from MNIST alone")
        if not tags.get("warm_start", "none").startswith("none"):
            raise MnistError(f"{ref}: fine-tuned from {tags['warm_start']}; members start afresh")
        if any(m.run_id == run_id for m in members):
            raise MnistError(f"{ref}: the same model as another member (run {run_id})")
        members.append(Member(resolved, run_id, params))
    return members


def config(given: TrainConfig, members: list[Member]) -> TrainConfig:
    """`given` with the members' recipe and data settings and the first member's seed (its
    split scores the ensemble); members that differ in them, or whose recipe cannot be read
    here, are an error."""
    differ = [k for k in SHARED if len({_logged(m, k) for m in members}) > 1]
    if differ:
        shown = "; ".join(f"{k}: " + ", ".join(str(_logged(m, k)) for m in members) for k in differ)
        raise MnistError(f"--from-models: the members differ in recipe or data ({shown})")
    first = members[0]
    theirs = {k: None if v == "None" else v for k in SHARED if (v := _logged(first, k)) is not None}
    try:
        return TrainConfig(**{**given.model_dump(), **theirs, "seed": first.seed})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise MnistError(
            f"--from-models: the members' recipe cannot be used here ({problems})"
        ) from None
