"""Data checks on every split: NaN, +-Inf, out-of-range pixels, shapes, labels, counts.

`validate` returns the cleaned splits and a report; the policy decides what happens to bad
samples: `fail` stops the run, `drop` removes them, `impute` repairs pixels (NaN and -Inf to
the background, +Inf and out-of-range values clipped into range) and drops samples whose label
is invalid, since a label cannot be guessed. Wrong shapes and count mismatches always fail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from mnist.errors import MnistError
from mnist.preprocess import Arrays
from mnist.settings import NanPolicy

FIRST = 10  # offending indices kept in the report, per split
IMAGE_SHAPE = (28, 28, 1)


@dataclass
class SplitReport:
    """What the checks found in one split (pixel counts, sample counts, first bad indices)."""

    samples: int
    source: str = ""
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    out_of_range: int = 0
    invalid_labels: int = 0
    bad_samples: int = 0
    shape_error: str | None = None
    count_mismatch: str | None = None
    first_bad_indices: list[int] = field(default_factory=list)
    dropped: int = 0
    imputed: int = 0
    kept: np.ndarray | None = field(default=None, repr=False)  # row indices left after `drop`

    @property
    def fatal(self) -> str | None:
        return self.shape_error or self.count_mismatch

    def counts(self) -> dict[str, int]:
        keys = ("nan", "posinf", "neginf", "out_of_range", "invalid_labels", "bad_samples")
        return {k: getattr(self, k) for k in keys} | {"dropped": self.dropped}


@dataclass
class ValidationReport:
    """The checks' findings per split, and what the policy did."""

    policy: str
    pixel_range: tuple[float, float]
    splits: dict[str, SplitReport]

    @property
    def problems(self) -> int:
        return sum(r.bad_samples for r in self.splits.values())

    def to_dict(self) -> dict:
        splits = {
            n: {k: v for k, v in asdict(r).items() if k != "kept"} for n, r in self.splits.items()
        }
        return {
            "policy": self.policy,
            "pixel_range": list(self.pixel_range),
            "splits": splits,
            "problems": self.problems,
        }

    def metrics(self) -> dict[str, float]:
        """Flat counts for MLflow: `validation.<split>.<check>`."""
        return {
            f"validation.{name}.{check}": float(value)
            for name, report in self.splits.items()
            for check, value in report.counts().items()
        }

    def summary(self) -> str:
        """Problems per split, e.g. `train: 3 NaN pixel(s) in 2 of 100 samples (first at [7])`."""
        lines = []
        for name, r in self.splits.items():
            where = f"{name} ({r.source})" if r.source else name
            if r.fatal:
                lines.append(f"{where}: {r.fatal}")
            elif r.bad_samples:
                found = [
                    f"{n} {what}"
                    for n, what in (
                        (r.nan, "NaN pixel(s)"),
                        (r.posinf, "+Inf pixel(s)"),
                        (r.neginf, "-Inf pixel(s)"),
                        (r.out_of_range, f"pixel(s) outside {list(self.pixel_range)}"),
                        (r.invalid_labels, "label(s) outside 0-9"),
                    )
                    if n
                ]
                lines.append(
                    f"{where}: {', '.join(found)} in {r.bad_samples} of {r.samples} samples "
                    f"(first at index {r.first_bad_indices[:5]})"
                )
        return "; ".join(lines) or "no problems"


class ValidationError(MnistError):
    """Validation found problems the policy does not allow; carries the report."""

    def __init__(self, message: str, report: ValidationReport):
        super().__init__(message)
        self.report = report


def _check(
    arrays: Arrays, lo: float, hi: float, source: str
) -> tuple[SplitReport, np.ndarray, np.ndarray]:
    """Report on one split, with per-sample masks of bad pixels and of invalid labels."""
    x, y = arrays.x, arrays.y
    report = SplitReport(samples=len(x), source=source)
    if x.shape[1:] != IMAGE_SHAPE:
        report.shape_error = f"images have shape {x.shape[1:]}, expected {IMAGE_SHAPE}"
    if y is not None and len(y) != len(x):
        report.count_mismatch = f"{len(x)} images but {len(y)} labels"
    if report.fatal:
        return report, np.zeros(len(x), bool), np.zeros(len(x), bool)
    flat = x.reshape(len(x), int(np.prod(x.shape[1:])))
    nan, posinf, neginf = np.isnan(flat), np.isposinf(flat), np.isneginf(flat)
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(flat) & ((flat < lo) | (flat > hi))
    report.nan, report.posinf, report.neginf = int(nan.sum()), int(posinf.sum()), int(neginf.sum())
    report.out_of_range = int(outside.sum())
    bad_pixels = np.asarray((nan | posinf | neginf | outside).any(axis=1))
    bad_labels = np.zeros(len(x), bool) if y is None else np.asarray(y.sum(axis=1) != 1)
    report.invalid_labels = int(bad_labels.sum())
    bad = bad_pixels | bad_labels
    report.bad_samples = int(bad.sum())
    report.first_bad_indices = np.flatnonzero(bad)[:FIRST].tolist()
    return report, bad_pixels, bad_labels


def validate(
    splits: dict[str, Arrays],
    policy: NanPolicy = "fail",
    pixel_range: tuple[float, float] = (0.0, 1.0),
    sources: dict[str, str] | None = None,
) -> tuple[dict[str, Arrays], ValidationReport]:
    """Check every split and apply `policy`; raise `ValidationError` when the run must stop."""
    if policy not in ("fail", "drop", "impute"):
        raise MnistError(f"unknown NaN policy {policy!r}: use fail, drop or impute")
    lo, hi = pixel_range
    report = ValidationReport(policy, pixel_range, {})
    cleaned: dict[str, Arrays] = {}
    for name, arrays in splits.items():
        split_report, bad_pixels, bad_labels = _check(arrays, lo, hi, (sources or {}).get(name, ""))
        report.splits[name] = split_report
        if split_report.fatal or policy == "fail" or not split_report.bad_samples:
            cleaned[name] = arrays
            continue
        x = arrays.x
        if policy == "impute" and bad_pixels.any():
            x = x.copy()
            x[bad_pixels] = np.clip(
                np.nan_to_num(x[bad_pixels], nan=lo, posinf=hi, neginf=lo), lo, hi
            )
            split_report.imputed = int((bad_pixels & ~bad_labels).sum())
        drop = bad_labels | (bad_pixels if policy == "drop" else False)
        split_report.dropped = int(drop.sum())
        split_report.kept = np.flatnonzero(~drop)
        cleaned[name] = arrays.with_x(x).take(split_report.kept)
    if any(r.fatal for r in report.splits.values()):
        raise ValidationError(f"invalid data: {report.summary()}", report)
    if policy == "fail" and report.problems:
        raise ValidationError(
            f"invalid data ({report.summary()}); rerun with --nan-policy drop or impute", report
        )
    empty = [n for n, a in cleaned.items() if len(a) == 0 and len(splits[n])]
    if empty:
        raise ValidationError(f"no valid samples left in {', '.join(empty)}", report)
    return cleaned, report
