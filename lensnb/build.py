"""Build driver: execute the chapters with papermill, then build the Jupyter Book.

Usage (the Makefile wraps these)::

    python -m lensnb.build book --profile default
    python -m lensnb.build nb 01_geometry --profile default -p n_systems 2000 -y 'priors: {...}'

A chapter is re-executed only when its *build key* changes: the hash of the
notebook's code and markdown, the parameters it runs with (profile, then
``-f`` files, ``-y`` YAML, ``-p`` pairs, in that order of precedence), and the
source of every lensnb module it imports (transitively). The executed copy is
written to a temporary file and moved into ``book/chapters`` only when every
cell ran; a failure prints the notebook, the cell and the error, keeps the
failed copy under ``build/failed`` and removes the stale chapter, so the book is
never built from a stale or half-executed notebook.
"""
from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import yaml

from . import config
from .provenance import run_header_markdown, version_string

PACKAGE_DIR = Path(__file__).resolve().parent
KEY_META = "lensnb"


class BuildError(RuntimeError):
    """A build step failed; the message says which notebook/file and why."""


# --------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------
def load_profile(name: str, profiles_dir: Path | None = None) -> dict:
    """Read ``profiles/<name>.yml`` (``yaml.safe_load``) and check its layout."""
    path = (profiles_dir or config.PROFILES_DIR) / f"{name}.yml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yml"))
        raise BuildError(f"{path}: no such profile; known profiles: {', '.join(known)}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise BuildError(f"{path}: a profile must be a mapping")
    extra = set(data) - {"description", "cost", "common", "notebooks"}
    if extra:
        raise BuildError(f"{path}: unknown top-level key(s) {sorted(extra)}")
    for key in ("common", "notebooks"):
        if not isinstance(data.get(key) or {}, dict):
            raise BuildError(f"{path}: '{key}' must be a mapping")
    cost = data.get("cost") or {}
    if not isinstance(cost, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             for v in cost.values()):
        raise BuildError(f"{path}: 'cost' must map chapter names to seconds")
    return data


def resolve_value(text: str):
    """papermill's ``-p`` typing: True/False/None, int, float, else the string."""
    from papermill.cli import _resolve_type

    return _resolve_type(text)


def parse_overrides(args: list[str]) -> dict:
    """Parse papermill-style arguments: ``-f FILE``, ``-y YAML``, ``-p KEY VALUE`` (and long forms)."""
    p = argparse.ArgumentParser(prog="ARGS", add_help=False)
    p.add_argument("-p", "--parameters", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    p.add_argument("-y", "--parameters_yaml", action="append", default=[])
    p.add_argument("-f", "--parameters_file", action="append", default=[])
    ns, rest = p.parse_known_args(args)
    if rest:
        raise BuildError(f"unrecognised notebook argument(s): {' '.join(rest)} (use -p KEY VALUE, -y YAML, -f FILE)")
    out: dict = {}
    for f in ns.parameters_file:
        data = yaml.safe_load(Path(f).read_text())
        if not isinstance(data, dict):
            raise BuildError(f"{f}: a parameters file must hold a mapping")
        out.update(data)
    for y in ns.parameters_yaml:
        data = yaml.safe_load(y)
        if not isinstance(data, dict):
            raise BuildError(f"-y {y!r}: must be a YAML mapping")
        out.update(data)
    for key, value in ns.parameters:
        out[key] = resolve_value(value)
    return out


def declared_parameters(nb_path: Path) -> dict:
    """Parameters declared in the notebook's ``parameters`` cell (papermill's inspection)."""
    import papermill

    return papermill.inspect_notebook(str(nb_path))


def notebook_parameters(nb_path: Path, profile: dict, overrides: dict) -> dict:
    """Parameters for one notebook: profile ``common`` (declared ones only), its own section, overrides.

    Keys the notebook does not declare are an error (a typo must not pass silently).
    """
    name = nb_path.stem
    declared = declared_parameters(nb_path)
    params = {k: v for k, v in (profile.get("common") or {}).items() if k in declared}
    own = (profile.get("notebooks") or {}).get(name) or {}
    for source, values in (("profile", own), ("overrides", overrides)):
        unknown = set(values) - set(declared)
        if unknown:
            raise BuildError(
                f"{nb_path.name}: {source} set parameter(s) {sorted(unknown)} that the notebook does not declare "
                f"(declared: {sorted(declared)})"
            )
        params.update(values)
    return params


# --------------------------------------------------------------------------
# build key
# --------------------------------------------------------------------------
def _lensnb_imports(tree: ast.AST, current: str | None) -> set[str]:
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names if a.name.split(".")[0] == "lensnb"}
        elif isinstance(node, ast.ImportFrom):
            if node.level and current:
                base = current.split(".")[: -node.level] if not current.endswith("__init__") else current.split(".")[:-1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "lensnb":
                mods.add(mod)
                mods |= {f"{mod}.{a.name}" for a in node.names}
    return mods


def _module_file(mod: str) -> Path | None:
    parts = mod.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts) if parts else PACKAGE_DIR
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _code_source(nb: nbformat.NotebookNode) -> str:
    lines = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            lines += [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def imported_modules(nb: nbformat.NotebookNode) -> list[Path]:
    """Files of every lensnb module the notebook imports, followed transitively."""
    todo = {"lensnb"} | _lensnb_imports(ast.parse(_code_source(nb)), None)
    seen: dict[str, Path] = {}
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = _module_file(mod)
        if path is None:
            continue  # an attribute imported with ``from lensnb.x import name``
        seen[mod] = path
        current = mod + (".__init__" if path.name == "__init__.py" else "")
        todo |= _module_imports(path, current, path.stat().st_mtime_ns) - set(seen)
    return sorted(set(seen.values()))


@functools.lru_cache(maxsize=None)
def _module_imports(path: Path, current: str, mtime_ns: int) -> frozenset[str]:
    """A module file's lensnb imports, parsed once per process and version of the file (the build reads them for
    every chapter's key and order)."""
    return frozenset(_lensnb_imports(ast.parse(path.read_text()), current))


def build_key(nb_path: Path, params: dict, profile_name: str) -> str:
    """Hash of what determines a chapter's output (see the module docstring)."""
    nb = nbformat.read(nb_path, as_version=4)
    h = hashlib.sha256()
    for cell in nb.cells:
        h.update(cell.cell_type.encode() + b"\0" + cell.source.encode() + b"\0")
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(profile_name.encode())
    h.update(json.dumps(KERNEL_THREADS, sort_keys=True).encode())
    for name in ("data", "data_real"):
        data = params.get(name)
        if data:  # the user's manifests: a changed file re-executes the chapter
            p = Path(data)
            for f in sorted(p.rglob("*.parquet")) if p.is_dir() else [p]:
                st = f.stat()
                h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    mods = imported_modules(nb)
    for path in mods:
        h.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0" + path.read_bytes())
    if any(p.name == "answers.py" for p in mods):  # the answers page reads the other chapters' results
        for other in chapter_notebooks(nb_path.parent):
            if other.name != nb_path.name:
                h.update(other.name.encode() + b"\0" + (stored_key(config.CHAPTERS_DIR / other.name) or "").encode())
    for path in sorted((PACKAGE_DIR / "data").glob("*")):  # package data (e.g. the literature table)
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def stored_key(executed: Path) -> str | None:
    if not executed.exists():
        return None
    try:
        nb = json.loads(executed.read_text())
    except (OSError, ValueError):
        return None
    return (nb.get("metadata", {}).get(KEY_META) or {}).get("build_key")


# --------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------
def _postprocess(nb_path: Path, source: Path, profile: str, params: dict, overrides: dict, key: str) -> None:
    """Hide papermill's parameter cells and code inputs (behind a toggle), drop stderr streams
    (progress bars, already shown on the terminal), add the run header, record the build key."""
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
            if "hide-input" not in tags:
                tags.append("hide-input")
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    text = run_header_markdown(profile, params, overrides, version_string(), declared_parameters(source))
    header = nbformat.v4.new_markdown_cell(text)
    header.metadata["tags"] = ["run-header"]
    pos = next((i + 1 for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), 0)
    nb.cells.insert(pos, header)
    nb.metadata[KEY_META] = {"build_key": key, "profile": profile, "parameters": params, "version": version_string()}
    nbformat.write(nb, nb_path)


def execute(nb_path: Path, out_path: Path, params: dict, *, profile: str, overrides: dict, key: str) -> float:
    """Execute one notebook into ``out_path`` atomically; return the wall time [s]."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary copy lives outside the book's source tree, so even a killed run leaves
    # nothing there that Sphinx could pick up; os.replace moves it into place only when complete
    tmp_dir = config.BUILD_DIR / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=tmp_dir, prefix=f"{out_path.stem}.")
    os.close(fd)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(nb_path), tmp, parameters=params, kernel_name="python3",
            progress_bar=True, log_output=True, cwd=str(nb_path.parent),
        )
        _postprocess(Path(tmp), nb_path, profile, params, overrides, key)
    except PapermillExecutionError as exc:
        failed = config.FAILED_DIR / nb_path.name
        failed.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, failed)
        out_path.unlink(missing_ok=True)
        executed = nbformat.read(failed, as_version=4)
        injected = sum(
            "injected-parameters" in c.metadata.get("tags", []) for c in executed.cells[: exc.cell_index]
        )
        first_line = (exc.source or "").strip().splitlines()[0] if (exc.source or "").strip() else ""
        raise BuildError(
            f"{nb_path.name}: cell {exc.cell_index - injected + 1} (counting from 1 in the source notebook; "
            f"first line: {first_line!r}) raised {exc.ename}: {exc.evalue}\n  executed copy kept at {failed}"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        out_path.unlink(missing_ok=True)
        raise
    os.replace(tmp, out_path)
    return time.perf_counter() - t0


def chapter_notebooks(notebooks_dir: Path | None = None) -> list[Path]:
    return sorted((notebooks_dir or config.NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))


# Every chapter's kernel computes on one thread (torch, OpenMP, BLAS): a network's weights depend on the thread count
# (``train.cpu_threads``), so one fixed count gives the same numbers on every machine, and the build uses the other
# cores by running chapters side by side (``run_chapters``).
KERNEL_THREADS = {"LENSNB_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                  "MKL_NUM_THREADS": "1"}

# The chapters a chapter waits for when chapters run side by side: each reuses what the earlier one computed and
# cached in ``data/processed`` (data sets, trained models, gate scores; measured: the cache files two chapters write
# when each runs alone on an empty cache), so running them together would compute it twice. A chapter that imports
# ``lensnb.answers`` reads every other chapter's results and runs after all of them (as its build key says). A new
# chapter with no entry here runs whenever a worker is free.
AFTER: dict[str, tuple[str, ...]] = {
    "04_training": ("03_pools",),  # the request preset's data set
    "05_gates": ("03_pools", "04_training"),  # the same data set, the training chapter's networks
    "06_sample_size": ("03_pools", "04_training"),  # the same data set and networks
    "09_failure_modes": ("08_alternatives",),  # the detectable preset's data sets, networks and gate results
}


def chapter_key(nb_path: Path, profile_name: str, overrides: dict | None = None, *, data: str | None = None,
                data_real: str | None = None) -> tuple[dict, dict, str]:
    """(overrides with the data paths added, parameters, build key) of one chapter under a profile."""
    overrides = dict(overrides or {})
    profile = load_profile(profile_name)
    if data and "data" in declared_parameters(nb_path):
        overrides.setdefault("data", str(Path(data).resolve()))
    if data_real and "data_real" in declared_parameters(nb_path):  # real lenses + non-lenses (chapters 08, 09)
        overrides.setdefault("data_real", str(Path(data_real).resolve()))
    params = notebook_parameters(nb_path, profile, overrides)
    return overrides, params, build_key(nb_path, params, profile_name)


def run_notebook(nb_path: Path, profile_name: str, overrides: dict | None = None, *, force: bool = False,
                 data: str | None = None, data_real: str | None = None) -> bool:
    """Execute ``nb_path`` into ``book/chapters`` if its build key changed; True if it ran.

    ``data`` (a Parquet file or directory in the team's format) goes to every chapter that declares a
    ``data`` parameter; it is checked (schema, in a streaming pass) before anything executes.
    """
    overrides, params, key = chapter_key(nb_path, profile_name, overrides, data=data, data_real=data_real)
    out = config.CHAPTERS_DIR / nb_path.name
    if not force and stored_key(out) == key:
        print(f"[lensnb] {nb_path.stem}: up to date", flush=True)
        return False
    print(f"[lensnb] {nb_path.stem}: executing (profile {profile_name})", flush=True)
    c0 = _cpu_seconds()
    os.environ["LENSNB_CHAPTER"] = nb_path.stem  # inherited by the kernel: labels its training-throughput log
    os.environ.update(KERNEL_THREADS)  # inherited by the kernel: the thread counts its numbers are computed on
    # on the team's data a figure's layout defect is a warning in the build log (the figure is still drawn): a
    # layout rule never stops a user's review; the project's own builds and tests keep failing on it
    lint_mode = os.environ.get("LENSNB_LINT")
    if "data" in overrides and lint_mode is None:
        os.environ["LENSNB_LINT"] = "warn"
    try:
        dt = execute(nb_path, out, params, profile=profile_name, overrides=overrides, key=key)
    finally:
        if lint_mode is None:
            os.environ.pop("LENSNB_LINT", None)
    print(f"[lensnb] {nb_path.stem}: done in {dt:.1f} s", flush=True)
    from .lint import check_notebook

    for problem in check_notebook(nbformat.read(out, as_version=4), out.name):
        print(f"[lensnb] WARNING: {problem}", flush=True)
    record_timing(profile_name, nb_path.stem, dt, _other_share(c0, _cpu_seconds(), dt), overridden=bool(overrides))
    return True


def _waits_for(nb_path: Path, names: list[str]) -> set[str]:
    """The chapters among ``names`` that ``nb_path`` must wait for (``AFTER``; every other one for the answers page)."""
    if any(p.name == "answers.py" for p in imported_modules(nbformat.read(nb_path, as_version=4))):
        return set(names) - {nb_path.stem}
    return set(AFTER.get(nb_path.stem, ())) & set(names)


def expected_seconds(profile_name: str) -> dict[str, float]:
    """The profile's ``cost`` mapping (chapter -> seconds it took on the machine that wrote it): the order of a build
    that has no measurement of its own yet (a fresh clone), so its long chains start first; ``build/timings.json``'s
    measurements replace it chapter by chapter. Not a result: nothing in the book reads it."""
    return {str(c): float(v) for c, v in (load_profile(profile_name).get("cost") or {}).items()}


def chain_lengths(waits: dict[str, set[str]], seconds: dict[str, float]) -> dict[str, float]:
    """Per chapter, the longest run of chapters that can only start after it, itself included: the sum of their
    ``seconds`` (a chapter without a measurement counts 1 s). Starting the longest chains first keeps both cores busy
    to the end (the answers page, which waits for all, comes last anyway)."""
    memo: dict[str, float] = {}

    def length(c: str) -> float:
        if c not in memo:
            memo[c] = seconds.get(c, 1.0) + max((length(d) for d, w in waits.items() if c in w), default=0.0)
        return memo[c]

    return {c: length(c) for c in waits}


def next_chapters(waits: dict[str, set[str]], done: set[str], running: set[str], free: int,
                  priority: dict[str, float] | None = None) -> list[str]:
    """Up to ``free`` chapters to start now: not done, not running, every chapter they wait for done; the highest
    ``priority`` first (``chain_lengths``); among equals a chapter that waited for another (the rest of a chain) before
    one that waits for none (those fill the end), then the order of ``waits`` (the book's). Pure, so the order rule
    is tested apart from any execution."""
    ready = [c for c, w in waits.items() if c not in done and c not in running and w <= done]
    if priority:
        ready.sort(key=lambda c: (-priority.get(c, 0.0), not waits[c]))  # stable: ties keep the book's order
    return ready[:max(free, 0)]


def run_chapters(notebooks: list[Path], profile_name: str, *, jobs: int = 1, force: bool = False,
                 data: str | None = None, data_real: str | None = None) -> list[bool]:
    """Execute the stale chapters of ``notebooks``, up to ``jobs`` at a time; return, per chapter, whether it ran.

    Each chapter runs in its own process (``python -m lensnb.build nb NAME --no-book``), waiting for the chapters
    ``AFTER`` names (and the answers page for all). With ``jobs`` = 1 its output streams to the terminal; with more,
    each chapter's output goes to ``build/logs/NAME.log`` and a progress bar counts the chapters. A chapter whose
    build key is unchanged is not started (the answers page's key is read when its turn comes, after the others). On a
    failure no further chapter starts, the running ones finish, and the error names the chapter and its log."""
    from tqdm import tqdm

    names = [nb.stem for nb in notebooks]
    by_name = dict(zip(names, notebooks))
    waits = {nb.stem: _waits_for(nb, names) for nb in notebooks}
    seconds = {**expected_seconds(profile_name),  # the profile's hint, replaced by this machine's measurements
               **{c: r["seconds"] for c, r in _read_timings().get(profile_name, {}).get("chapters", {}).items()
                  if "overrides" not in c}}
    priority = chain_lengths(waits, seconds)
    logs = config.BUILD_DIR / "logs"
    env = {**os.environ, "LENSNB_BUILD_JOBS": str(jobs)}
    done, ran, running, failed = set(), {}, {}, []
    shown = time.monotonic()
    bar = tqdm(total=len(names), desc="chapters", unit="chapter", disable=jobs == 1)

    def stop(signum, frame):  # a terminated build stops its chapters too (each runs in a session of its own)
        raise SystemExit(128 + signum)

    was = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        while True:
            while not failed:  # start what can start; an up-to-date chapter takes no worker, so look again
                ready = next_chapters(waits, done, set(running), jobs - len(running), priority)
                if not ready:
                    break
                for name in ready:
                    _, _, key = chapter_key(by_name[name], profile_name, data=data, data_real=data_real)
                    if not force and stored_key(config.CHAPTERS_DIR / f"{name}.ipynb") == key:
                        print(f"[lensnb] {name}: up to date", flush=True)
                        done.add(name)
                        ran[name] = False
                        bar.update()
                        continue
                    cmd = [sys.executable, "-m", "lensnb.build", "nb", name, "--profile", profile_name, "--no-book"]
                    cmd += ["--data", data] if data else []
                    cmd += ["--data-real", data_real] if data_real else []
                    # each chapter in a session of its own: stopping the build stops its kernel too
                    if jobs == 1:
                        running[name] = (subprocess.Popen(cmd, env=env, start_new_session=True), None)
                    else:
                        logs.mkdir(parents=True, exist_ok=True)
                        log = open(logs / f"{name}.log", "w")
                        print(f"[lensnb] {name}: executing (profile {profile_name}; log {logs / name}.log)", flush=True)
                        running[name] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                          start_new_session=True), log)
            if not running:
                break  # everything done, or a failure stopped the rest
            time.sleep(0.2)
            for name, (proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                if log is not None:
                    log.close()
                if proc.returncode != 0:
                    failed.append(name)
                    continue
                done.add(name)
                ran[name] = True
                bar.update()
                if log is not None:
                    tail = [ln for ln in (logs / f"{name}.log").read_text(errors="replace").splitlines()
                            if ln.startswith("[lensnb]") and ("done in" in ln or "WARNING" in ln)]
                    for ln in tail:
                        print(ln, flush=True)
            if bar.postfix != ", ".join(running):
                bar.set_postfix_str(", ".join(running))
            elif time.monotonic() - shown > 10:  # the elapsed time moves while long chapters run
                bar.refresh()
                shown = time.monotonic()
    except BaseException:
        for proc, _ in running.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait()
        raise
    finally:
        bar.close()
        if was is not None:
            signal.signal(signal.SIGTERM, was)
    if failed:
        parts = []
        for name in failed:
            log = logs / f"{name}.log"
            if jobs == 1 or not log.exists():  # its error is on the terminal already
                parts.append(f"{name} failed (its error is above)")
                continue
            text = log.read_text(errors="replace").splitlines()
            start = max((i for i, ln in enumerate(text) if ln.startswith("[lensnb] ERROR: ")), default=None)
            error = ("\n".join(text[start:start + 20]).removeprefix("[lensnb] ERROR: ") if start is not None else
                     "\n".join(text[-20:]))
            parts.append(f"{name} failed (whole log: {log}):\n{error}")
        raise BuildError("\n".join(parts))
    if len(done) < len(names):  # pragma: no cover - AFTER is checked by a test to be acyclic
        raise BuildError(f"chapters {sorted(set(names) - done)} wait for each other (build.AFTER)")
    return [ran.get(n, False) for n in names]


# --------------------------------------------------------------------------
# costs: what each chapter took, written by the build into one page
# --------------------------------------------------------------------------
TIMINGS = "timings.json"
COSTS_PAGE = "build_costs.md"


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # pragma: no cover - torch is a dependency; be robust anyway
        pass
    return "CPU only"


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine spent busy, CPU seconds of this process and its finished children):
    Linux ``/proc/stat`` and ``getrusage``; None elsewhere."""
    import resource

    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    busy = (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)) / os.sysconf("SC_CLK_TCK")
    own = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return busy, own


def _other_share(c0, c1, wall: float) -> float | None:
    """Share of the machine's CPU capacity that *other* work used while a chapter ran (0 = alone)."""
    if c0 is None or c1 is None or wall <= 0:
        return None
    other = (c1[0] - c0[0]) - (c1[1] - c0[1])
    return max(0.0, other / (wall * (os.cpu_count() or 1)))


def _read_timings() -> dict:
    path = config.BUILD_DIR / TIMINGS
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def record_timing(profile: str, chapter: str, seconds: float, other: float | None, *, overridden: bool = False,
                  full_build: float | None = None, cold: bool = False, jobs: int | None = None) -> None:
    """Add one measurement to ``build/timings.json`` (per profile and chapter: wall time [s], date, the share of
    the machine's CPU that other work used meanwhile, cores, device, how many chapters the build ran side by side
    (``jobs``, by default ``LENSNB_BUILD_JOBS``, which the build gives each chapter's process); overridden runs are
    kept apart). Chapters running side by side write here in turn (a lock file)."""
    import fcntl

    if jobs is None:
        jobs = int(os.environ.get("LENSNB_BUILD_JOBS", "1") or 1)
    config.BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(config.BUILD_DIR / (TIMINGS + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _record_timing(profile, chapter, seconds, other, overridden=overridden, full_build=full_build, cold=cold,
                       jobs=jobs)


def _record_timing(profile, chapter, seconds, other, *, overridden, full_build, cold, jobs) -> None:
    t = _read_timings()
    prof = t.setdefault(profile, {"chapters": {}})
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    if full_build is not None:
        prof["full_build"] = {"seconds": round(full_build, 1), "finished": stamp, "cpus": os.cpu_count(),
                              "device": _device(), "cold": cold, "jobs": jobs,
                              "other_share": None if other is None else round(other, 3)}
    else:
        prof["chapters"][chapter + (" (with overrides)" if overridden else "")] = {
            "seconds": round(seconds, 1), "finished": stamp, "other_share": None if other is None else round(other, 3),
            "cpus": os.cpu_count(), "device": _device(), "jobs": jobs}
    tmp = config.BUILD_DIR / (TIMINGS + ".tmp")
    tmp.write_text(json.dumps(t, indent=1, sort_keys=True))
    os.replace(tmp, config.BUILD_DIR / TIMINGS)


def _disk_use(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def costs_markdown(profile: str) -> str:
    """The book's "What the build costs" page, from ``build/timings.json`` and the size of ``data/processed``."""
    t = _read_timings().get(profile, {})
    rows = t.get("chapters", {})
    lines = ["# What the build costs", "",
             f"Wall times of each chapter of the `{profile}` profile as the build driver (`python -m lensnb.build`, "
             "which `make book` runs) last measured them on the machine that built this book. \"Other work\" is the "
             "share of the machine's CPU that processes other than the build used meanwhile (from `/proc/stat`); "
             "above 10% the time is marked *busy* and overstates the chapter's own cost. When the build ran chapters side by "
             "side (`--jobs`, one per core by default; each chapter computes on one thread), a chapter's wall time "
             "includes sharing the machine with the chapter beside it (marked *shared*), and its other work is not told apart from that "
             "chapter's: the whole build's line below gives the share used outside the build. A chapter that finds its data sets, trained models or gate results cached in "
             "`data/processed` runs faster than on a clean checkout; `make clean-data` then `make book` measures the "
             "whole cost.", ""]
    if not rows:
        lines.append("No chapter has been timed yet for this profile.")
    else:
        lines += ["| chapter | wall time | finished | other work | cores | device |", "|:--|--:|:--|--:|--:|:--|"]
        for ch in sorted(rows):
            r = rows[ch]
            o = r.get("other_share")
            if r.get("jobs", 1) > 1:
                other = f"shared ({r['jobs']} at a time)"
            else:
                other = "not measured" if o is None else f"{100 * o:.0f}%" + (" (busy)" if o > 0.10 else "")
            lines.append(f"| {ch} | {r['seconds'] / 60:.1f} min ({r['seconds']:.0f} s) | {r['finished']} | "
                         f"{other} | {r['cpus']} | {r['device']} |")
        plain = [r["seconds"] for ch, r in rows.items() if "overrides" not in ch]
        lines += ["", f"Sum of the chapter times: {sum(plain) / 60:.1f} min."]
    full = t.get("full_build")
    if full:
        start = ("from an empty `data/processed` (nothing cached)" if full.get("cold") else
                 "reusing data sets, models or gate results cached in `data/processed` by an earlier build")
        o = full.get("other_share")
        busy = ("" if o is None else f"; work outside the build used {100 * o:.0f}% of the machine's CPU meanwhile"
                + (", so the time overstates the build's own cost" if o > 0.10 else ""))
        lines.append(f"The last build that executed every chapter in one run took {full['seconds'] / 60:.1f} min in all, "
                     f"{start}, {full.get('jobs', 1)} chapter(s) at a time (finished {full['finished']}, "
                     f"{full['cpus']} cores, {full['device']}{busy}).")
    gb = _disk_use(config.PROCESSED_DIR) / 1e9
    lines += ["", f"Disk: `data/processed` (simulated data sets, cached models and gate results, all regenerated on "
              f"demand) holds {gb:.1f} GB; `make clean-data` removes it.", ""]
    return "\n".join(lines)


def write_costs_page(profile: str) -> Path:
    """Write ``book/build_costs.md`` (git-ignored) when its content changed."""
    path = config.BOOK_DIR / COSTS_PAGE
    text = costs_markdown(profile)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def book_sources_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(config.BOOK_DIR.rglob("*")):
        if "_build" in path.parts or not path.is_file() or path.name.startswith("."):
            continue
        h.update(str(path.relative_to(config.BOOK_DIR)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def drop_stale_index(index: Path, toc: Path) -> bool:
    """Remove the HTML book's ``index.html`` redirect when it points at a page other than the table of contents'
    root (sphinx-external-toc writes the redirect only when it is missing, so a changed root would otherwise keep
    sending readers to the old first page). Returns True when it was removed."""
    import re

    import yaml

    if not index.exists() or not toc.exists():
        return False
    root = (yaml.safe_load(toc.read_text()) or {}).get("root")
    m = re.search(r'http-equiv="Refresh" content="0; url=([^"\s]+)"', index.read_text(errors="replace"))
    if root and m and m.group(1) != f"{root}.html":
        index.unlink()
        return True
    return False


def build_book(force: bool = False) -> bool:
    """Run ``jupyter-book build`` (execution off, warnings as errors) unless nothing changed."""
    stamp = config.BUILD_DIR / "book.stamp"
    index = config.BOOK_DIR / "_build" / "html" / "index.html"
    drop_stale_index(index, config.BOOK_DIR / "_toc.yml")
    key = book_sources_hash()
    if not force and index.exists() and stamp.exists() and stamp.read_text() == key:
        print(f"[lensnb] book: up to date ({index})", flush=True)
        return False
    stamp.unlink(missing_ok=True)
    exe = Path(sys.executable).with_name("jupyter-book")
    # without the console script (packages installed with --target, as on the GPU host) run its module
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; "
                                                 "sys.argv[0] = 'jupyter-book'; sys.exit(main())"]
    cmd = [*launcher, "build", str(config.BOOK_DIR), "--builder", "html", "-W", "--keep-going", "--quiet"]
    print("[lensnb] book: " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise BuildError(f"jupyter-book build failed (exit {proc.returncode}); see the warnings above")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    print(f"[lensnb] book: {index}", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lensnb.build", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("book", help="execute stale chapters, then build the HTML book")
    b.add_argument("--profile", default="default")
    b.add_argument("--force", action="store_true", help="re-execute every chapter")
    b.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="chapters run side by side, each on one thread (default: one per core; the numbers do not "
                        "depend on it)")
    b.add_argument("--data", default=None, help="run on a Parquet file or directory in the team's format")
    b.add_argument("--data-real", default=None, help="real lenses and non-lenses (stamp_npz, label) for the chapters "
                   "that read them")
    n = sub.add_parser("nb", help="re-execute one chapter with overrides, then rebuild the book")
    n.add_argument("name", help="notebook name, e.g. 01_geometry")
    n.add_argument("--profile", default="default")
    n.add_argument("--no-book", action="store_true")
    n.add_argument("--data", default=None, help="run on a Parquet file or directory in the team's format")
    n.add_argument("--data-real", default=None, help="real lenses and non-lenses (stamp_npz, label)")
    args, rest = ap.parse_known_args(argv)
    t0 = time.perf_counter()
    try:
        if args.data:
            from .dataset import validate_schema

            try:
                validate_schema(args.data)
            except ValueError as exc:
                raise BuildError(str(exc)) from None
        if args.data_real:
            from .dataset import load_real

            try:
                load_real(args.data_real)
            except ValueError as exc:
                raise BuildError(str(exc)) from None
        if args.cmd == "book":
            if rest:
                ap.error(f"unrecognised arguments: {' '.join(rest)}")
            if args.jobs < 1:
                ap.error(f"--jobs {args.jobs}: expected at least 1")
            cold = _disk_use(config.PROCESSED_DIR) == 0
            c0 = _cpu_seconds()
            ran = run_chapters(chapter_notebooks(), args.profile, jobs=args.jobs, force=args.force, data=args.data,
                               data_real=args.data_real)
            if ran and all(ran) and not args.data and not args.data_real:
                wall = time.perf_counter() - t0
                record_timing(args.profile, "", 0.0, _other_share(c0, _cpu_seconds(), wall), full_build=wall,
                              cold=cold, jobs=args.jobs)
            write_costs_page(args.profile)
            build_book()
        else:
            nb = config.NOTEBOOKS_DIR / f"{Path(args.name).stem}.ipynb"
            if not nb.exists():
                names = ", ".join(p.stem for p in chapter_notebooks())
                raise BuildError(f"{nb}: no such notebook; chapters are: {names}")
            run_notebook(nb, args.profile, parse_overrides(rest), force=True, data=args.data, data_real=args.data_real)
            if not args.no_book:
                write_costs_page(args.profile)
                build_book()
    except BuildError as exc:
        print(f"[lensnb] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    dt = time.perf_counter() - t0
    print(f"[lensnb] finished in {dt:.1f} s ({dt / 60:.1f} min); per-chapter costs: {config.BOOK_DIR / COSTS_PAGE}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
