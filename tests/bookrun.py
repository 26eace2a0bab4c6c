"""Helpers of the book tests: a project copy to build in, the build driver in a subprocess, glued values."""
import json
import os
import shutil
import subprocess
import sys
import time

from lensnb import config


def _copy_project(root):
    for sub in ("notebooks", "profiles"):
        shutil.copytree(config.ROOT / sub, root / sub)
    shutil.copytree(config.ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build", "chapters"))
    return root


def _build(root, *args):
    env = dict(os.environ, LENSNB_ROOT=str(root))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lensnb.build", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1800)
    return proc, time.perf_counter() - t0


def _glued(nb_path, mime="text/plain"):
    """Glued values of an executed chapter by key, in one MIME type (keys without it are left out)."""
    nb = json.loads(nb_path.read_text())
    out = {}
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            key = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if key:
                data = o["data"]
                value = data.get(f"application/papermill.record/{mime}", data.get(mime))
                if value is not None:
                    out[key] = "".join(value) if isinstance(value, list) else value
    return out
