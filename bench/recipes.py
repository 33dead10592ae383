"""The accuracy recipes as whole commands on this machine: seeds of one recipe, and ensembles
of them.

    python -m bench.recipes [--profile best] [--seeds 0,1,2] [--ensembles 3]
                            [--store DIR] [--epochs N] [--validation-split F]

1. `mnist train --profile PROFILE --seed S` for each seed, one whole command after another:
   its wall seconds (process start to exit, TensorFlow, Prefect and MLflow included) and its
   run's test accuracy on the 10,000 MNIST test images.
2. For each K in `--ensembles`: `mnist ensemble --from-models` of the first K seeds' versions
   (no training): the averaged model's test accuracy, and the command's seconds.

Everything runs in `--store` (an MLflow SQLite store and its artifacts; default a new
temporary directory). A seed that already has a finished run there with its command's
seconds (the tag `bench.command_seconds`) is not trained again, so a bench of hours resumes
where it stopped. MNIST from MNIST_DATA_DIR, else ../shared/data/mnist.
Writes bench/results/recipes_PROFILE.{json,md}. Test accuracy is reported, never used to
choose anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import machine, save

BIN = Path(sys.executable).parent
SECONDS_TAG = "bench.command_seconds"
LOAD_TAG = "bench.load_at_start"


def _env(store: Path) -> dict[str, str]:
    """This environment without MNIST_* settings (a test limit would change the figures)."""
    data = os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MNIST_")},
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "MNIST_DATA_DIR": str(Path(data).resolve()),
    }


def _client(store: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{store / 'mlflow.db'}")


def _mnist(args: list[str], store: Path) -> tuple[float, str]:
    """Run one `mnist` command in `store`; its wall seconds and stdout (an error stops here)."""
    started = time.perf_counter()
    out = subprocess.run(
        [str(BIN / "mnist"), *args],
        cwd=store,
        env=_env(store),
        capture_output=True,
        text=True,
        timeout=3 * 3600,
    )
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"mnist {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return seconds, out.stdout


def _run_id(stdout: str) -> str:
    return next(line.split()[-1] for line in stdout.splitlines() if line.startswith("MLflow run:"))


def _recipe(profile: str, overrides: dict[str, str]) -> dict[str, str]:
    """The recipe's knobs, `overrides` over them, as its runs log them (strings)."""
    from mnist.recipe import load_recipe

    return {k: str(v) for k, v in load_recipe(profile).model_dump().items()} | overrides


def _finished(store: Path, profile: str, seed: int, overrides: dict[str, str]) -> dict | None:
    """The measurement of `seed` in `store` already: a finished run of the same recipe whose
    command ran to the end."""
    if not (store / "mlflow.db").exists():
        return None
    client = _client(store)
    found = client.get_experiment_by_name(f"bench-{profile}")
    if found is None:
        return None
    recipe = _recipe(profile, overrides)
    query = f"params.seed = '{seed}' and attributes.status = 'FINISHED'"
    for run in client.search_runs([found.experiment_id], query):
        same = all(run.data.params.get(k) == v for k, v in recipe.items())
        if same and SECONDS_TAG in run.data.tags:
            return _row(run, float(run.data.tags[SECONDS_TAG]))
    return None


def _row(run, seconds: float) -> dict:
    version = run.data.tags["registered_version"]
    return {
        "seed": int(run.data.params["seed"]),
        "run_id": run.info.run_id,
        "version": version,
        "epochs": int(run.data.params["epochs"]),
        "command_s": round(seconds, 1),
        "test_accuracy": run.data.metrics["test_accuracy"],
        "load_at_start": run.data.tags.get(LOAD_TAG, "-"),
    }


def seed_run(store: Path, profile: str, seed: int, overrides: dict[str, str]) -> dict:
    """One whole `mnist train` command for `seed` (or its measurement from an earlier run)."""
    experiment = f"bench-{profile}"
    if (done := _finished(store, profile, seed, overrides)) is not None:
        print(f"seed {seed}: measured before, run {done['run_id']}", flush=True)
        return done
    args = ["train", "--profile", profile, "--seed", str(seed), "--no-added-data"]
    args += ["--experiment", experiment, "--registered-model", experiment]
    args += [a for k, v in overrides.items() for a in (f"--{k.replace('_', '-')}", v)]
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    seconds, stdout = _mnist(args, store)
    client = _client(store)
    run_id = _run_id(stdout)
    client.set_tag(run_id, SECONDS_TAG, f"{seconds:.1f}")
    client.set_tag(run_id, LOAD_TAG, load)
    row = _row(client.get_run(run_id), seconds)
    print(f"seed {seed}: {row['test_accuracy']:.4f} in {seconds:.0f} s", flush=True)
    return row


def ensemble(store: Path, profile: str, seeds: list[dict]) -> dict:
    """`mnist ensemble --from-models` of these seeds' versions: its test accuracy."""
    refs = ",".join(f"models:/bench-{profile}/{s['version']}" for s in seeds)
    args = ["ensemble", "--from-models", refs, "--experiment", f"bench-{profile}-ensembles"]
    seconds, stdout = _mnist([*args, "--registered-model", f"bench-{profile}-ensemble"], store)
    run = _client(store).get_run(_run_id(stdout))
    accuracy = run.data.metrics["test_accuracy"]
    print(f"ensemble of {len(seeds)}: {accuracy:.4f} ({seconds:.0f} s)", flush=True)
    return {
        "members": len(seeds),
        "seeds": [s["seed"] for s in seeds],
        "run_id": run.info.run_id,
        "test_accuracy": accuracy,
        "command_s": round(seconds, 1),
    }


def table(report: dict) -> str:
    seeds, ensembles = report["seeds"], report["ensembles"]
    lines = [
        f"`{report['profile']}`: whole `mnist train --profile {report['profile']}` commands "
        f"(validation split {report['validation_split']}), one after another, and ensembles of "
        "their models (`mnist ensemble --from-models`).",
        "",
        "| seed | epochs | test acc. (%) | errors of 10,000 | whole command (s) | load at start |",
        "|---|---|---|---|---|---|",
    ]
    for s in seeds:
        errors = round((1 - s["test_accuracy"]) * 10000)
        lines.append(
            f"| {s['seed']} | {s['epochs']} | {100 * s['test_accuracy']:.2f} | {errors} | "
            f"{s['command_s']:.0f} | {s.get('load_at_start', '-')} |"
        )
    accuracies = [s["test_accuracy"] for s in seeds]
    first = ", ".join(str(s["seed"]) for s in seeds[:3])
    lines += [
        "",
        f"Median of {len(seeds)} seeds: **{100 * statistics.median(accuracies):.2f}%** "
        f"(min {100 * min(accuracies):.2f}, max {100 * max(accuracies):.2f}); of the first "
        f"three ({first}): **{100 * statistics.median(accuracies[:3]):.2f}%**. Longest command "
        f"{max(s['command_s'] for s in seeds):.0f} s.",
    ]
    if ensembles:
        lines += [
            "",
            "| ensemble of seeds | test accuracy (%) | errors of 10,000 |",
            "|---|---|---|",
        ]
        for e in ensembles:
            errors = round((1 - e["test_accuracy"]) * 10000)
            seeds_shown = ", ".join(map(str, e["seeds"]))
            lines.append(f"| {seeds_shown} | {100 * e['test_accuracy']:.2f} | {errors} |")
    lines += ["", f"This run of the bench: {report['machine']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--profile", default="best", help="the recipe of the seeds")
    p.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated")
    p.add_argument("--ensembles", default="3", help="ensemble sizes (first K seeds), or ''")
    p.add_argument("--store", type=Path, help="where to keep the runs (resumes from them)")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (exploring)")
    p.add_argument(
        "--validation-split", type=float, help="override the recipe's split (0: none held out)"
    )
    args = p.parse_args()
    given = {"epochs": args.epochs, "validation_split": args.validation_split}
    overrides = {k: str(v) for k, v in given.items() if v is not None}  # as the runs log them
    store = (args.store or Path(tempfile.mkdtemp(prefix="bench-recipes-"))).resolve()
    store.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    seeds = [seed_run(store, args.profile, int(s), overrides) for s in args.seeds.split(",")]
    sizes = [int(k) for k in args.ensembles.split(",") if k]
    ensembles = [ensemble(store, args.profile, seeds[:k]) for k in sizes if 2 <= k <= len(seeds)]
    report = {
        "profile": args.profile,
        "validation_split": float(_recipe(args.profile, overrides)["validation_split"]),
        "machine": machine(load),
        "store": str(store),
        "seeds": seeds,
        "ensembles": ensembles,
    }
    save(f"recipes_{args.profile}", report, table(report))


if __name__ == "__main__":
    main()
