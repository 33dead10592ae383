"""Models trained before, taken as an ensemble's members (`mnist ensemble --from-models`):
each traced to the training run that made it, all of one recipe. Checked before anything is
loaded or made, so a wrong reference is one line."""

from __future__ import annotations

from dataclasses import dataclass

from mnist import registry
from mnist.errors import MnistError
from mnist.recipe import Recipe
from mnist.tracking import call, client


@dataclass(frozen=True)
class Member:
    """A model as the version it is now (an alias resolved), its run and that run's params."""

    ref: str
    run_id: str
    params: dict[str, str]

    @property
    def seed(self) -> int:
        return int(self.params["seed"])


def traced(refs: list[str]) -> list[Member]:
    """Each reference traced to its training run; one that is not, or is gone, is an error."""
    members = []
    for ref in refs:
        resolved = registry.resolve(ref)
        run_id = registry.source_run(resolved)
        run = call(client().get_run, run_id, missing=f"{ref}: its run {run_id} is gone")
        params = dict(run.data.params)
        if not {"model", "seed"} <= params.keys():
            raise MnistError(f"{ref}: run {run_id} logged no recipe; it is not a training run")
        members.append(Member(resolved, run_id, params))
    return members


def one_recipe(members: list[Member]) -> dict[str, str]:
    """The recipe (and profile) the members' runs logged; members of several is an error."""
    keys = ["profile", *Recipe.model_fields]
    differ = [k for k in keys if len({m.params.get(k) for m in members}) > 1]
    if differ:
        shown = "; ".join(
            f"{k}: " + ", ".join(str(m.params.get(k)) for m in members) for k in differ
        )
        raise MnistError(f"--from-models: the members were trained with other recipes ({shown})")
    return {k: v for k in keys if (v := members[0].params.get(k)) is not None}
