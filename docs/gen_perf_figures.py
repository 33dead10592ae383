"""Build-time copy of the benchmarks' pictures from bench/results/ into the performance pages.

The tables are included from bench/results/*.md by the pages themselves (pymdownx.snippets);
the PNGs beside them are copied here into `performance/figures/`, so the site always shows the
figures of the last benchmark run, and a rerun needs no edit of the docs.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"

for png in sorted(RESULTS.glob("*.png")):
    with mkdocs_gen_files.open(f"performance/figures/{png.name}", "wb") as out:
        out.write(png.read_bytes())
