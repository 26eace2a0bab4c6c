"""A corpus of bad (and good) inputs in the team's format, built on demand by the tests.

Each builder writes one Parquet file (or directory) into a folder and returns its path; the
expected error is the pattern that the one-line message must match. Kept as code, not as binary
files, so the corpus is reviewable and nothing large is committed.
"""
from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lensnb.config import CENTER_PIX

BANDS = ("g", "r", "z")


def npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def good_images(rng, arc: bool, theta_px: float = 6.0, beta_frac: float = 0.5, counter: float = 1.0):
    """A red 'LRG' plus, if ``arc``, a blue outer image at theta_E + beta and a counter-image at theta_E - beta
    (``counter`` scales the counter-image; 0 leaves only the outer image)."""
    yy, xx = np.mgrid[0:64, 0:64]
    r2 = (xx - CENTER_PIX) ** 2 + (yy - CENTER_PIX) ** 2
    host = np.exp(-r2 / (2 * 3.0**2))
    out = {}
    ang = rng.uniform(0, 2 * np.pi)
    for b, (lf, af, sig) in zip(BANDS, ((0.3, 1.0, 0.003), (1.0, 1.0, 0.004), (2.0, 0.8, 0.012))):
        img = 0.2 * lf * host + rng.normal(0, sig, (64, 64))
        if arc:
            for rad, amp in ((theta_px * (1 + beta_frac), 0.04), (theta_px * (1 - beta_frac), 0.02 * counter)):
                sgn = 1 if rad > theta_px else -1
                cx, cy = CENTER_PIX + sgn * rad * np.cos(ang), CENTER_PIX + sgn * rad * np.sin(ang)
                img = img + af * amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0**2))
        out[f"image_{b}"] = img.astype(np.float32)
    return out


def good_frame(n_hosts: int = 12, per_host: int = 3, seed: int = 0, counter: float = 1.0,
               theta_px: float = 6.0) -> pd.DataFrame:
    """A valid manifest with only the required columns, written without the simulator."""
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(n_hosts):
        ra, dec = rng.uniform(0, 360), rng.uniform(-20, 30)
        ctrl_arrays = good_images(np.random.default_rng([seed, h]), arc=False)
        for k in range(per_host):
            arrays = {b: ctrl_arrays[b] + good_images(rng, True, theta_px=theta_px, counter=counter)[b] - good_images(np.random.default_rng([seed, h]), False)[b]
                      for b in ctrl_arrays}
            rows.append({"stamp_npz": npz(arrays), "ctrl_stamp_npz": npz(ctrl_arrays), "ra": ra, "dec": dec,
                         "brickname": f"{int(ra * 10):04d}p{int(abs(dec) * 10):03d}",
                         "theta_e_arcsec": rng.uniform(0.5, 2.5), "psf_fwhm_used_r": rng.uniform(1.1, 1.6),
                         "arc_snr": rng.uniform(5, 100)})
    return pd.DataFrame(rows)


def write(df: pd.DataFrame, path) -> str:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    return str(path)


def _with_blob(df, row, col, arrays):
    df = df.copy()
    df.at[row, col] = npz(arrays)
    return df


def build(case: str, folder) -> tuple[str, str]:
    """Write bad-input ``case`` into ``folder``; return (path, expected message pattern)."""
    base = good_frame()
    f = folder / f"{case}.parquet"
    good = good_images(np.random.default_rng(0), True)
    if case == "missing_column":
        return write(base.drop(columns=["arc_snr"]), f), r"missing required column 'arc_snr'"
    if case == "wrong_dtype":
        return write(base.assign(ra=base["ra"].astype(str)), f), r"column 'ra' has type (large_)?string, expected a number"
    if case == "npz_missing_band":
        return write(_with_blob(base, 4, "stamp_npz", {k: v for k, v in good.items() if k != "image_z"}), f), \
            r"row 4, column 'stamp_npz'.*no key 'image_z'"
    if case == "wrong_shape":
        return write(_with_blob(base, 5, "ctrl_stamp_npz", {**good, "image_r": np.zeros((32, 32), np.float32)}), f), \
            r"row 5, column 'ctrl_stamp_npz'.*shape \(32, 32\)"
    if case == "nan_pixels":
        bad = {**good, "image_g": good["image_g"].copy()}
        bad["image_g"][10, 10] = np.nan
        bad["image_g"][11, 11] = np.inf
        return write(_with_blob(base, 6, "stamp_npz", bad), f), r"row 6, column 'stamp_npz'.*2 NaN/inf"
    if case == "pickled_object":
        obj = np.empty(1, dtype=object)
        obj[0] = {"payload": "never unpickle me"}
        return write(_with_blob(base, 7, "stamp_npz", {**good, "image_r": obj}), f), \
            r"row 7, column 'stamp_npz'.*pickled object.*refused"
    if case == "pickle_blob":  # a whole cell that is a pickle, not an npz
        df = base.copy()
        df.at[9, "ctrl_stamp_npz"] = pickle.dumps({"payload": "never unpickle me"})
        return write(df, f), r"row 9, column 'ctrl_stamp_npz'.*not an npz archive.*never unpickled"
    if case == "empty_file":
        f.write_bytes(b"")
        return str(f), r"empty file"
    if case == "duplicate_rows":
        return write(pd.concat([base, base.iloc[[2]]], ignore_index=True), f), r"row 36 duplicates .* row 2"
    if case == "truncated":
        write(base, f)
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
        return str(f), r"not a readable Parquet file"
    if case == "nan_metadata":
        df = base.copy()
        df.loc[8, "theta_e_arcsec"] = np.nan
        return write(df, f), r"row 8, column 'theta_e_arcsec'.*not finite"
    raise KeyError(case)


CASES = ("missing_column", "wrong_dtype", "npz_missing_band", "wrong_shape", "nan_pixels", "pickled_object",
         "pickle_blob", "empty_file", "duplicate_rows", "truncated", "nan_metadata")

__all__ = ["build", "CASES", "good_frame", "write", "pickle"]
