"""`mnist export`: a registered version (or any model reference) written as ONNX, a TensorFlow
SavedModel or a LiteRT flat buffer, for use elsewhere (`mnist.model_formats`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.options import UsageError, add_command, settings
from mnist.model_formats import FORMATS
from mnist.settings import RegistrySettings


def export_command(args: argparse.Namespace) -> None:
    from mnist.model_formats import write_copy
    from mnist.references import ModelRef

    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}; choose one of: {', '.join(FORMATS)}")
    name = settings(args, RegistrySettings).registered_model
    ref = str(ModelRef.by_version(name, args.version)) if args.version.isdigit() else args.version
    written = write_copy(ref, args.format, Path(args.output))
    agreed = written.agreement
    print(
        f"wrote {written.path} ({written.format}, {written.source} of {ref}); loaded back, it "
        f"gives Keras's digit on {agreed.same_digit * agreed.images:.0f}/{agreed.images} "
        f"check images, max |diff| {agreed.max_abs_diff:.1e}"
    )


def add_parsers(commands: argparse._SubParsersAction) -> None:
    command = add_command(
        commands,
        "export",
        export_command,
        "write a model as ONNX, a TensorFlow SavedModel or LiteRT, for use elsewhere",
        RegistrySettings,
    )
    command.add_argument(
        "version",
        metavar="VERSION",
        help="a version number of --registered-model, or any model reference "
        "(models:/NAME@ALIAS, a model directory, a .keras file)",
    )
    command.add_argument(
        "--format",
        default="onnx",
        metavar="|".join(FORMATS),
        help="what to write (default: onnx)",
    )
    command.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="where (must not exist yet)"
    )
