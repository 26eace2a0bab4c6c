"""Provenance: lensnb version and git commit, and the compact run header of a chapter."""
from __future__ import annotations

import json
import subprocess

from . import __version__
from .config import ROOT


def git_commit(root=ROOT) -> str:
    """Short commit hash of the checkout, with ``-dirty`` when tracked files changed; ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def version_string() -> str:
    """``lensnb <version> (git <commit>)``."""
    return f"lensnb {__version__} (git {git_commit()})"


def _fmt(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(", ", ": ")) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 400 else text[:397] + "..."


def run_header_markdown(profile: str, parameters: dict, overrides: dict, version: str) -> str:
    """A compact MyST block stating how a chapter was executed.

    One line names the profile, seed, data source and version; a collapsed
    admonition lists every parameter (overridden ones marked).
    """
    seed = parameters.get("seed", "n/a")
    data = parameters.get("data") or "embedded simulator"
    lines = [
        f"**Run:** profile `{profile}` · seed `{seed}` · data: {data} · {version}"
        + (f" · overrides: {', '.join(f'`{k}`' for k in sorted(overrides))}" if overrides else ""),
        "",
        "```{admonition} Parameters this chapter ran with",
        ":class: dropdown",
    ]
    for key in sorted(parameters):
        mark = " *(overridden)*" if key in overrides else ""
        lines.append(f"- `{key}` = `{_fmt(parameters[key])}`{mark}")
    lines.append("```")
    return "\n".join(lines)
