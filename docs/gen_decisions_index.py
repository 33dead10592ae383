"""Build-time index of the decision records in docs/architecture/decisions/.

Every `NNNN-slug.md` there is listed with its title (its first heading), so a record added by
anyone appears in the index and, through the nav's wildcard (docs/SUMMARY.md), in the menu.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

HERE = Path(__file__).resolve().parent / "architecture" / "decisions"

rows = []
for path in sorted(HERE.glob("[0-9]*.md")):
    lines = path.read_text(encoding="utf-8").splitlines()
    title = next((line.lstrip("#").strip() for line in lines if line.startswith("# ")), path.stem)
    rows.append(f"- [{title}]({path.name})")

with mkdocs_gen_files.open("architecture/decisions/index.md", "w") as out:
    out.write(
        "# Decision records\n\n"
        "Short records of choices a reader might question: where the project keeps its own code "
        "instead of a library, or relies on something private, and why. Each has a **Context**, "
        "a **Decision** and its **Consequences**, with the numbers that were measured.\n\n"
        "To add one, write `docs/architecture/decisions/NNNN-slug.md` starting with "
        "`# NNNN. Title`; this list and the menu pick it up at the next build.\n\n"
        "\n".join(rows)
        + "\n"
    )
