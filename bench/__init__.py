"""Benchmarks that print figures and save them under bench/results/ (not tests)."""

import json
import os
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def machine(load: tuple[float, float, float]) -> str:
    """How busy this machine was when a benchmark started: its load averages and cores."""
    return f"load average at start {', '.join(f'{v:.2f}' for v in load)} on {os.cpu_count()} cores"


def save(name: str, report: dict, table: str) -> None:
    """bench/results/NAME.json and NAME.md, and the table printed."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{name}.md").write_text(table)
    print("\n" + table)
