"""Notebook hygiene: source notebooks are committed without outputs.

``python -m lensnb.nbtools strip notebooks/*.ipynb`` removes outputs, execution
counts and volatile metadata; ``check`` exits non-zero if any notebook has outputs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def has_outputs(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells)


def strip(path: Path) -> bool:
    """Strip outputs in place; return True if the file changed."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
        for key in ("execution", "papermill", "collapsed", "scrolled"):
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    for key in ("papermill", "widgets"):
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    if changed:
        nbformat.write(nb, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in {"strip", "check"}:
        print("usage: python -m lensnb.nbtools {strip|check} NOTEBOOK...", file=sys.stderr)
        return 2
    bad = []
    for name in argv[1:]:
        path = Path(name)
        if argv[0] == "strip":
            if strip(path):
                print(f"stripped {path}")
        elif has_outputs(path):
            bad.append(path)
    for path in bad:
        print(f"{path}: committed with outputs; run `make strip`", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
