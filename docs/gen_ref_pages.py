"""Build-time API reference: one page per module of the four layers, from their docstrings.

mkdocs-gen-files runs this on every `mkdocs build` or `mkdocs serve`: it walks `app/`, `flows/`,
`tasks/` and `mnist/` as they are now, so modules that are added, moved or split appear without
editing the docs. mkdocstrings reads them statically (griffe): nothing is imported.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "app": "the command line, the HTTP service and the production stack",
    "flows": "Prefect flows, the temporary Prefect API, stale runs, automations",
    "tasks": "thin Prefect tasks, one module per stage",
    "mnist": "the library: data, models, training, evaluation, tracking, registry (no Prefect)",
}
SKIP = {"__main__"}


def _modules(layer: str) -> list[tuple[str, ...]]:
    """Dotted paths of the layer's modules and packages (namespace ones too), sorted."""
    found: set[tuple[str, ...]] = set()
    for path in (ROOT / layer).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] in SKIP or any(p.startswith((".", "_")) and p != "__init__" for p in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.update(parts[:i] for i in range(1, len(parts) + 1))  # every package above it
    return sorted(found)


nav = mkdocs_gen_files.Nav()
index = [
    "# API reference",
    "",
    "Generated at build time from the docstrings of every module, layer by layer "
    "([Layers](../architecture/layers.md) says what each layer may import).",
    "",
]

for layer, about in LAYERS.items():
    index.append(f"- [`{layer}`]({layer}/index.md): {about}")
    for parts in _modules(layer):
        source = ROOT.joinpath(*parts)
        package = source.is_dir()
        doc = Path(*parts, "index.md") if package else Path(*parts).with_suffix(".md")
        nav[parts] = doc.as_posix()
        page = Path("reference", doc)
        with mkdocs_gen_files.open(page, "w") as out:
            if package and not (source / "__init__.py").exists():
                title = f"# `{'.'.join(parts)}`\n\n"
                out.write(title + (about if len(parts) == 1 else "A namespace package.") + "\n")
            else:
                out.write(f"::: {'.'.join(parts)}\n")
                init = source / "__init__.py" if package else source.with_suffix(".py")
                mkdocs_gen_files.set_edit_path(page, init.relative_to(ROOT))

with mkdocs_gen_files.open("reference/index.md", "w") as out:
    out.write("\n".join(index) + "\n")

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as out:
    out.write("- [Overview](index.md)\n")
    out.writelines(nav.build_literate_nav())
