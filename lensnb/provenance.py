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


def _clip(text: str) -> str:
    return text if len(text) <= 400 else text[:397] + "..."


def _fmt(value) -> str:
    return _clip(json.dumps(value, sort_keys=True, separators=(", ", ": ")) if isinstance(value, (dict, list))
                 else repr(value))


def run_header_markdown(profile: str, parameters: dict, overrides: dict, version: str,
                        declared: dict | None = None) -> str:
    """A compact MyST block stating how a chapter was executed.

    One line names the profile, seed, data source (only for chapters that read images, i.e. declare a
    ``data`` parameter) and version; a collapsed admonition lists every effective parameter, in the
    order the notebook declares them, each marked by origin: *notebook default* (the value in the
    notebook's ``parameters`` cell), *profile* or *override* (``-p``/``-y``/``-f``/``DATA=``).
    ``declared``: papermill's ``inspect_notebook`` result {name: {"default": source text, ...}}.
    """
    declared = declared if declared is not None else {k: {"default": repr(v)} for k, v in parameters.items()}
    head = f"**Run:** profile `{profile}`"
    if "seed" in declared:
        head += f" · seed `{parameters.get('seed', declared['seed'].get('default'))}`"
    if "data" in declared:
        head += f" · data: {parameters.get('data') or 'embedded simulator'}"
    head += f" · {version}"
    if overrides:
        head += f" · overrides: {', '.join(f'`{k}`' for k in sorted(overrides))}"
    lines = [head, "", "```{admonition} Parameters this chapter ran with", ":class: dropdown", "",
             "Origin: *default* = the notebook's parameters cell, *profile* = `profiles/" + profile + ".yml`, "
             "*override* = given on the command line.", ""]
    for key, info in declared.items():
        if key in overrides:
            value, origin = _fmt(parameters[key]), "override"
        elif key in parameters:
            value, origin = _fmt(parameters[key]), "profile"
        else:
            value, origin = _clip(str(info.get("default", "?"))), "default"
        lines.append(f"- `{key}` = `{value}` *({origin})*")
    if not declared:
        lines.append("This chapter has no parameters.")
    lines.append("```")
    return "\n".join(lines)
