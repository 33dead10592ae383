"""Training speed and accuracy on this machine: the Keras reference CNN against our profiles.

    python -m bench.training [--seeds 3] [--reference-seeds 1] [--best-seeds 1]
                             [--recipes reference,fast,default,best] [--skip-flow]
                             [--commands 3] [--sizes 0.25,0.5,1]

One run trains every recipe on the real MNIST (MNIST_DATA_DIR, else ../shared/data/mnist),
each seed in a fresh process, checking test accuracy every epoch (every quarter epoch for
`fast`; evaluation time is not counted as training time). It reports, per recipe: time to
99.0% test accuracy, final test accuracy, seconds per epoch, peak RSS, parameters and the ratio
of time to 99% against the reference (medians over seeds, with min-max). Then the training
flow's overhead (the whole flow, ingest through plots, model logging and registration, against
bare training of the same profile) and inference through `mlflow.pyfunc` of the logged model.
Then whole `mnist train --profile fast` commands against the reference's whole process to
99% (from its start, less the time spent checking), and `default` on a quarter, a half and
all of the training set (cost against size).
Test accuracy is only reported here, never used to choose anything.
Writes bench/results/training.{json,md} and race_to_99.png, cost_vs_size.png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# isort: off
import mnist.env  # noqa: F401  (first: env defaults)

# isort: on
from bench import RESULTS, machine, save

TARGET = 0.99  # the race is to 99% test accuracy (not the promotion gate's floor)
# Recipe files (mnist/recipes/): `reference` is the Keras "simple MNIST convnet" as published.
RECIPES = ("reference", "fast", "default", "best")
CHECKS_PER_EPOCH = {"fast": 4}


def data_dir() -> Path:
    return Path(os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist")).resolve()


def one(recipe: str, seed: int, overrides: dict | None = None) -> dict:
    """Train one recipe with one seed in this process; the measurements as a dict. Process
    times count from BENCH_STARTED (the parent's clock just before it started this process)."""
    started = float(os.environ.get("BENCH_STARTED", time.time()))
    import keras
    import numpy as np

    from mnist import data, evaluation, preprocess, training
    from mnist.settings import TrainConfig

    settings = {"profile": recipe, **(overrides or {})}
    config = TrainConfig(**settings, seed=seed, data_dir=data_dir())
    prepared = preprocess.prepare(
        data.load(config.data_dir), config.validation_split, seed, config.train_limit
    )
    x_test, labels = prepared.test.x, prepared.test.labels
    steps_per_epoch = -(-len(prepared.train) // config.batch_size)
    every = max(1, steps_per_epoch // CHECKS_PER_EPOCH.get(recipe, 1))

    class Probe(keras.callbacks.Callback):
        """Test accuracy at intervals; the clock stops while it evaluates."""

        def __init__(self):
            super().__init__()
            self.trained, self.checks, self.epoch_seconds, self.steps = 0.0, [], [], 0
            self.probing = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = self.mark = time.perf_counter()
            self.epoch_trained = 0.0

        def _check(self, epoch: float) -> None:
            now = time.perf_counter()
            self.trained += now - self.mark
            self.epoch_trained += now - self.mark
            probabilities = evaluation.predict_proba(self.model, x_test)
            accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
            # the process's age at this point, less the time spent in these checks
            self.probing += time.perf_counter() - now
            age = time.time() - started - self.probing
            self.checks.append(
                {
                    "epoch": round(epoch, 3),
                    "seconds": round(self.trained, 2),
                    "process_seconds": round(age, 2),
                    "test_accuracy": accuracy,
                }
            )
            self.mark = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps += training.STEPS_PER_EXECUTION
            if batch + 1 < steps_per_epoch and self.steps >= every:
                self.steps = 0
                self._check(len(self.epoch_seconds) + (batch + 1) / steps_per_epoch)

        def on_epoch_end(self, epoch, logs=None):
            self.steps = 0
            self._check(epoch + 1)
            self.epoch_seconds.append(self.epoch_trained)

    probe = Probe()
    net, history = training.train(config, prepared, callbacks=[probe])
    first = next((c for c in probe.checks if c["test_accuracy"] >= TARGET), {})
    reached = first.get("seconds")
    return {
        "recipe": recipe,
        "seed": seed,
        "config": config.params(),
        "epochs": config.epochs,
        "parameters": net.count_params(),
        "time_to_99_s": reached,
        "process_to_99_s": first.get("process_seconds"),
        "train_samples": len(prepared.train),
        "train_seconds": round(probe.trained, 2),
        "seconds_per_epoch": round(statistics.median(probe.epoch_seconds), 2),
        "final_test_accuracy": probe.checks[-1]["test_accuracy"],
        "final_val_accuracy": (
            float(history["val_accuracy"].iloc[-1]) if "val_accuracy" in history else None
        ),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "checks": probe.checks,
    }


def flow_and_inference(workdir: Path) -> dict:
    """The `fast` profile through the whole training flow, then pyfunc inference on its model.

    Started as `mnist train` starts it: Prefect's temporary API boots while TensorFlow loads,
    so the flow's time counts every stage but not the API's start, which is reported apart."""
    process_start = time.perf_counter()
    from flows.temporary_api import start_early

    api_started = start_early()
    import mlflow
    import numpy as np

    from flows.training import training_flow
    from mnist import data
    from mnist.settings import TrainConfig

    api_started()
    ready = time.perf_counter()
    config = TrainConfig(profile="fast", seed=0, data_dir=data_dir(), experiment="bench")
    os.chdir(workdir)
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    started = time.perf_counter()
    result = training_flow(config)
    flow_seconds = time.perf_counter() - started
    epochs = mlflow.MlflowClient().get_metric_history(result.run_id, "epoch_seconds")
    training_seconds = sum(m.value for m in epochs)

    images = data.load(config.data_dir).test.images.astype(np.float32)
    model = mlflow.pyfunc.load_model(result.model_uri)
    model.predict(images[:256])  # warm-up
    batch = []
    for _ in range(3):
        started = time.perf_counter()
        model.predict(images)
        batch.append(time.perf_counter() - started)
    single = []
    for i in range(200):
        started = time.perf_counter()
        model.predict(images[i : i + 1])
        single.append((time.perf_counter() - started) * 1000)
    return {
        "flow_seconds": round(flow_seconds, 2),
        "flow_test_accuracy": result.test_accuracy,
        "flow_training_seconds": round(training_seconds, 2),
        "overhead_seconds": round(flow_seconds - training_seconds, 2),
        "start_to_flow_s": round(ready - process_start, 2),
        "start_to_done_s": round(ready - process_start + flow_seconds, 2),
        "batch_images_per_s": round(len(images) / statistics.median(batch)),
        "single_image_ms_p50": round(float(np.percentile(single, 50)), 2),
        "single_image_ms_p99": round(float(np.percentile(single, 99)), 2),
    }


def command(workdir: Path, seed: int) -> dict:
    """`mnist train --profile fast` as a user runs it: the whole process, wall clock."""
    env = {**os.environ, "MNIST_DATA_DIR": str(data_dir())}
    started = time.perf_counter()
    mnist = str(Path(sys.executable).parent / "mnist")
    args = ["train", "--profile", "fast", "--seed", str(seed), "--experiment", "bench-command"]
    out = subprocess.run([mnist, *args], cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(f"mnist train failed:\n{out.stderr[-3000:]}")
    accuracy = float(out.stdout.split("test accuracy:")[1].split()[0])
    return {"seed": seed, "seconds": round(seconds, 2), "test_accuracy": accuracy}


def draw_race(runs: list[dict], commands: list[dict], path: Path) -> None:
    """Test accuracy against seconds of training for every recipe and seed; the whole
    `mnist train --profile fast` command and the reference's whole process as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    colours = dict(zip(RECIPES, ("tab:gray", "tab:green", "tab:blue", "tab:purple"), strict=True))
    for recipe in dict.fromkeys(r["recipe"] for r in runs):
        for i, run in enumerate(r for r in runs if r["recipe"] == recipe):
            ax.plot(
                [c["seconds"] for c in run["checks"]],
                [100 * c["test_accuracy"] for c in run["checks"]],
                ".-",
                color=colours.get(recipe),
                alpha=0.9 if i == 0 else 0.45,
                label=f"{recipe} (training only)" if i == 0 else None,
            )
    ax.axhline(100 * TARGET, color="black", lw=0.8, ls=":")
    ref = [r["process_to_99_s"] for r in runs if r["recipe"] == "reference"]
    if ref and ref[0]:
        ax.axvline(
            ref[0],
            color="tab:gray",
            ls="--",
            lw=1,
            label=f"reference whole process to 99%: {ref[0]:.0f} s",
        )
    if commands:
        median = statistics.median(c["seconds"] for c in commands)
        label = f"`mnist train --profile fast`, whole command: {median:.0f} s"
        ax.axvline(median, color="tab:green", ls="--", lw=1, label=label)
    ax.set_xscale("log")
    ax.set_ylim(97.0, 100.0)
    ax.set_xlabel("seconds (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("The race to 99% on 2 CPU cores")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def draw_sizes(sizes: list[dict], path: Path) -> None:
    """Training seconds against training images, each point labelled with its accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    n = [r["train_samples"] for r in sizes]
    ax.plot(n, [r["train_seconds"] for r in sizes], "o-", color="tab:blue")
    for r in sizes:
        ax.annotate(
            f"{100 * r['final_test_accuracy']:.2f}%",
            (r["train_samples"], r["train_seconds"]),
            textcoords="offset points",
            xytext=(-10, 8),
        )
    ax.set_xlim(0, max(n) * 1.1)
    ax.set_ylim(0, max(r["train_seconds"] for r in sizes) * 1.2)
    ax.set_xlabel("training images")
    ax.set_ylabel("training seconds (default, 5 epochs)")
    ax.set_title("Cost against data size (labels: test accuracy)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def child(args: list[str]) -> dict:
    """Run `python -m bench.training ARGS` in a fresh process; its JSON answer."""
    env = {**os.environ, "BENCH_STARTED": repr(time.time())}
    out = subprocess.run(
        [sys.executable, "-m", "bench.training", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if out.returncode:
        raise SystemExit(f"bench.training {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(values: list[float | None], digits: int = 2) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "never"
    median = round(statistics.median(known), digits)
    missed = f", {len(values) - len(known)} missed" if len(known) < len(values) else ""
    if len(known) == 1:
        return f"{median}{missed}"
    return f"{median} ({round(min(known), digits)}-{round(max(known), digits)}{missed})"


def table(runs: list[dict], seeds: dict[str, int]) -> str:
    by = {
        r: [x for x in runs if x["recipe"] == r] for r in dict.fromkeys(x["recipe"] for x in runs)
    }
    ref = [x["time_to_99_s"] for x in by.get("reference", []) if x["time_to_99_s"]]
    ref_median = statistics.median(ref) if ref else None
    lines = [
        "| recipe | seeds | epochs | params | time to 99% (s) | final test acc (%) | s/epoch "
        "| peak RSS (MB) | time to 99% vs reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for recipe, rs in by.items():
        t99 = [x["time_to_99_s"] for x in rs]
        known = [t for t in t99 if t is not None]
        ratio = f"{statistics.median(known) / ref_median:.2f}x" if known and ref_median else "-"
        accuracy = spread([100 * x["final_test_accuracy"] for x in rs])
        lines.append(
            f"| {recipe} | {len(rs)} | {rs[0]['epochs']} | {rs[0]['parameters']:,} | "
            f"{spread(t99, 1)} | {accuracy} | {spread([x['seconds_per_epoch'] for x in rs], 1)} "
            f"| {spread([x['peak_rss_mb'] for x in rs], 0)} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds for fast and default")
    p.add_argument("--reference-seeds", type=int, default=1, help="seeds for the reference")
    p.add_argument("--best-seeds", type=int, default=1, help="seeds for best (30 min each)")
    p.add_argument("--recipes", default=",".join(RECIPES), help="recipe names or .toml files")
    p.add_argument("--skip-flow", action="store_true")
    p.add_argument(
        "--commands",
        type=int,
        default=3,
        help="whole `mnist train --profile fast` commands to time (0: none)",
    )
    p.add_argument(
        "--sizes",
        default="0.25,0.5,1",
        help="fractions of the training set for `default` ('' : none)",
    )
    p.add_argument("--one", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("--flow", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--config", default="{}", help=argparse.SUPPRESS)  # exploring recipes
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), json.loads(args.config))))
        return
    if args.flow:
        print(json.dumps(flow_and_inference(Path(args.flow))))
        return

    recipes = args.recipes.split(",")
    seeds = {"reference": args.reference_seeds, "best": args.best_seeds}
    seeds = {r: seeds.get(r, args.seeds) for r in recipes}
    load = os.getloadavg()
    runs = []
    for recipe in recipes:
        for seed in range(seeds[recipe]):
            runs.append(child(["--one", recipe, str(seed)]))
            r = runs[-1]
            print(
                f"{recipe} seed {seed}: 99% at {r['time_to_99_s']} s, final "
                f"{r['final_test_accuracy']:.4f}, {r['seconds_per_epoch']} s/epoch, "
                f"{r['peak_rss_mb']} MB",
                flush=True,
            )
    report = {"load_average_at_start": load, "cores": os.cpu_count(), "runs": runs}
    md = table(runs, seeds)
    commands = []
    if args.commands:
        workdir = Path(tempfile.mkdtemp(prefix="bench-command-"))
        for seed in range(args.commands):
            commands.append(command(workdir, seed))
            print(f"mnist train --profile fast --seed {seed}: {commands[-1]}", flush=True)
        report["commands"] = commands
        median = statistics.median(c["seconds"] for c in commands)
        ref = [x["process_to_99_s"] for x in runs if x["recipe"] == "reference"]
        ratio = f"{median / statistics.median(ref):.2f}x" if ref and all(ref) else "-"
        md += (
            "\nWhole `mnist train --profile fast` commands (seeds 0-"
            f"{args.commands - 1}, one new directory: the first creates the MLflow store): "
            + ", ".join(f"{c['seconds']} s" for c in commands)
            + f"; median {median:.1f} s, against {spread(ref, 1)} s for the reference's whole "
            f"process to reach 99%: **{ratio}**. Every command ends after training, evaluation, "
            "plots, model logging and registration.\n"
        )
    if args.sizes:
        sizes = []
        for fraction in map(float, args.sizes.split(",")):
            limit = json.dumps({"train_limit": round(60_000 * fraction)})
            sizes.append(child(["--one", "default", "0", "--config", limit]))
            r = sizes[-1]
            print(
                f"default on {r['train_samples']} images: {r['train_seconds']} s, "
                f"{r['final_test_accuracy']:.4f}",
                flush=True,
            )
        report["sizes"] = sizes
        md += (
            "\n| training images (default, seed 0) | training s | s per 1,000 images "
            "| test acc (%) |\n|---|---|---|---|\n"
        ) + "".join(
            f"| {r['train_samples']:,} | {r['train_seconds']} | "
            f"{1000 * r['train_seconds'] / r['train_samples']:.2f} | "
            f"{100 * r['final_test_accuracy']:.2f} |\n"
            for r in sizes
        )
        RESULTS.mkdir(exist_ok=True)
        draw_sizes(sizes, RESULTS / "cost_vs_size.png")
    if not args.skip_flow:
        flow = child(["--flow", tempfile.mkdtemp(prefix="bench-flow-")])
        bare = next(
            (x["train_seconds"] for x in runs if x["recipe"] == "fast" and x["seed"] == 0), None
        )
        flow["bare_training_seconds"] = bare
        report["flow"] = flow
        md += (
            f"\nTraining flow, `fast` profile, seed 0: {flow['flow_seconds']} s for the flow, "
            f"{flow['flow_training_seconds']} s of it in training epochs (bare training of the "
            f"same recipe above: {bare} s), so {flow['overhead_seconds']} s of overhead (ingest, "
            "validation, a new MLflow store, tracking, evaluation, plots, model logging and "
            "registration). The process, from its start to the flow's end, took "
            f"{flow['start_to_done_s']} s, {flow['start_to_flow_s']} s of it importing "
            "TensorFlow, Prefect and MLflow while Prefect's temporary API started (as `mnist "
            "train` does).\n\nInference through `mlflow.pyfunc`: "
            f"{flow['batch_images_per_s']:,} images/s on the 10,000 test images in one batch; "
            f"one image {flow['single_image_ms_p50']} ms (p50), {flow['single_image_ms_p99']} ms "
            "(p99).\n"
        )
    md += f"\n{machine(load).capitalize()}.\n"
    save("training", report, md)
    draw_race(runs, commands, RESULTS / "race_to_99.png")


if __name__ == "__main__":
    main()
