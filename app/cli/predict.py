"""`mnist predict`: digits read from files, predicted by a saved or registered model, through
its ONNX copy with ONNX Runtime (no TensorFlow import) or through Keras (`--runtime`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.options import add_command, settings
from mnist.settings import PredictSettings


def predict(args: argparse.Namespace) -> None:
    chosen = settings(args, PredictSettings)
    from mnist import inference, tracking

    images, names = inference.read_inputs([Path(p) for p in args.inputs])
    model = tracking.load_runner(chosen.model, chosen.runtime)
    out = inference.predict(model, images, names, chosen.nan_policy)
    if out.report.problems:
        print(f"validation: {out.report.summary()} (policy {chosen.nan_policy})", file=sys.stderr)
    if args.output:
        out.table.to_csv(args.output, index=False)
        print(f"wrote {len(out.table)} predictions to {args.output}")
    else:
        print(out.table.to_string(index=False))


def add_parsers(commands: argparse._SubParsersAction) -> None:
    command = add_command(
        commands, "predict", predict, "predict digits with a saved model", PredictSettings
    )
    command.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help=".npy/.npz arrays of raw pixels, CSV rows, PNG/JPEG images of digits",
    )
    command.add_argument("--output", metavar="CSV", help="write predictions here instead")
