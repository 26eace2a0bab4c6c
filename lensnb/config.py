"""Project-wide paths and survey constants: the one place they are defined.

Paths follow a raw -> processed discipline (cookiecutter-data-science):
``data/raw`` holds inputs nobody regenerates (e.g. a team's manifests),
``data/processed`` holds datasets lensnb writes; ``build/`` holds executed
notebooks and build stamps; ``book/chapters`` receives the executed copies the
book renders. All of them are build outputs and are git-ignored.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("LENSNB_ROOT", Path(__file__).resolve().parents[1]))
NOTEBOOKS_DIR = ROOT / "notebooks"
PROFILES_DIR = ROOT / "profiles"
BOOK_DIR = ROOT / "book"
CHAPTERS_DIR = BOOK_DIR / "chapters"
BUILD_DIR = ROOT / "build"
FAILED_DIR = BUILD_DIR / "failed"
DATA_DIR = ROOT / "data"
RAW_DIR = DATA_DIR / "raw"
PROCESSED_DIR = DATA_DIR / "processed"

# --- DESI Legacy Surveys DR9/DR10 south imaging (simulation_priors.md §1) ---
PIXEL_SCALE = 0.262  # arcsec / pixel (coadd)
STAMP_SIZE = 64  # pixels on a side
BANDS = ("g", "r", "z")
ZERO_POINT = 22.5  # AB mag of 1 nanomaggy
# Lens centre in 0-based pixel-index coordinates: the geometric centre of the
# stamp (the cutout service puts the target at FITS CRPIX = (W+1)/2).
CENTER_PIX = (STAMP_SIZE - 1) / 2.0  # 31.5
# The request's "central 10x10 pixels": indices 27..36 on both axes, i.e. the
# box |dx| < 5 px, |dy| < 5 px around CENTER_PIX.
CORE_BOX = 10  # pixels on a side
# Distance of every stamp pixel from the lens centre [pixels], shape (64, 64).
RADIUS_PX = np.hypot(*np.meshgrid(np.arange(STAMP_SIZE) - CENTER_PIX, np.arange(STAMP_SIZE) - CENTER_PIX))
CORE_SLICE = slice(STAMP_SIZE // 2 - CORE_BOX // 2, STAMP_SIZE // 2 + CORE_BOX // 2)
