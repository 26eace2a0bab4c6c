"""The team's data format: Parquet manifests of npz stamps, and lensnb's reader/writer.

One row per injection. Every column, its type, unit and convention is listed in ``SCHEMA``
(the single place they are documented). ``REQUIRED`` columns are what any dataset must carry
(the team's own manifests included); the rest are written by lensnb's simulator so that each
arc can be re-rendered by an independent code (lenstronomy).

Conventions: angles on the sky in arcsec relative to the lens centre at the stamp's geometric
centre (pixel 31.5, 31.5), x along increasing column index, y along increasing row index;
position angles in radians from +x towards +y; ellipticities (e1, e2) =
(1-q)/(1+q) (cos 2 phi, sin 2 phi) (lenstronomy); SIE theta_E is lenstronomy's; shear potential
(gamma1 (x^2 - y^2) + 2 gamma2 x y) / 2; Sersic amplitudes in lenstronomy's SERSIC_ELLIPSE
convention (surface brightness at R_e [nmgy / arcsec^2], see ``lensnb.render``); images in
nanomaggies per pixel (AB zero point 22.5).
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from .config import BANDS, STAMP_SIZE

# name: (arrow type, unit, description)
SCHEMA: dict[str, tuple[pa.DataType, str, str]] = {
    "stamp_npz": (pa.binary(), "-", "np.savez bytes with image_g, image_r, image_z: 64x64 float32 [nmgy/pixel], host + arc"),
    "ctrl_stamp_npz": (pa.binary(), "-", "the same host without the arc (same host noise realisation)"),
    "ra": (pa.float64(), "deg", "host right ascension (identifies the host)"),
    "dec": (pa.float64(), "deg", "host declination (identifies the host)"),
    "brickname": (pa.string(), "-", "Legacy Surveys brick (0.25 deg sky region) of the host"),
    "theta_e_arcsec": (pa.float64(), "arcsec", "SIE Einstein radius (lenstronomy convention)"),
    "psf_fwhm_used_r": (pa.float64(), "arcsec", "r-band PSF FWHM used for the injection"),
    "arc_snr": (pa.float64(), "-", "matched-filter S/N of the noise-free, PSF-convolved arc summed over g, r, z: "
                "sqrt(sum_bands sum_pixels (arc / noise_sigma_band)^2)"),
    "host_id": (pa.int64(), "-", "simulator host index"),
    "host_type": (pa.string(), "-", "Tractor-like profile type of the host (DEV, SER, EXP)"),
    "host_z": (pa.float64(), "-", "host (lens) redshift"),
    "host_sigma_v_kms": (pa.float64(), "km/s", "host velocity dispersion"),
    "host_mag_g": (pa.float64(), "AB mag", "host total magnitude, g"),
    "host_mag_r": (pa.float64(), "AB mag", "host total magnitude, r"),
    "host_mag_z": (pa.float64(), "AB mag", "host total magnitude, z"),
    "host_r_eff_arcsec": (pa.float64(), "arcsec", "host half-light radius (geometric mean of the semi-axes)"),
    "host_n_sersic": (pa.float64(), "-", "host Sersic index"),
    "host_q": (pa.float64(), "-", "host light axis ratio b/a"),
    "host_phi_rad": (pa.float64(), "rad", "host light position angle"),
    "psf_fwhm_used_g": (pa.float64(), "arcsec", "g-band Moffat PSF FWHM"),
    "psf_fwhm_used_z": (pa.float64(), "arcsec", "z-band Moffat PSF FWHM"),
    "psf_moffat_beta": (pa.float64(), "-", "Moffat beta of the PSF (all bands)"),
    "noise_sigma_g": (pa.float64(), "nmgy/pixel", "per-pixel Gaussian sky noise, g"),
    "noise_sigma_r": (pa.float64(), "nmgy/pixel", "per-pixel Gaussian sky noise, r"),
    "noise_sigma_z": (pa.float64(), "nmgy/pixel", "per-pixel Gaussian sky noise, z"),
    "n_neighbours": (pa.int64(), "-", "neighbouring galaxies in the stamp"),
    "n_stars": (pa.int64(), "-", "stars in the stamp"),
    "lens_e1": (pa.float64(), "-", "SIE ellipticity e1"),
    "lens_e2": (pa.float64(), "-", "SIE ellipticity e2"),
    "lens_q": (pa.float64(), "-", "SIE axis ratio"),
    "lens_phi_rad": (pa.float64(), "rad", "SIE position angle"),
    "shear_gamma1": (pa.float64(), "-", "external shear gamma1"),
    "shear_gamma2": (pa.float64(), "-", "external shear gamma2"),
    "src_x_arcsec": (pa.float64(), "arcsec", "source centre x relative to the lens centre"),
    "src_y_arcsec": (pa.float64(), "arcsec", "source centre y relative to the lens centre"),
    "beta_arcsec": (pa.float64(), "arcsec", "source offset |beta|"),
    "beta_over_theta_e": (pa.float64(), "-", "|beta| / theta_E"),
    "src_z": (pa.float64(), "-", "source redshift"),
    "src_mag_g": (pa.float64(), "AB mag", "unlensed source magnitude, g"),
    "src_mag_r": (pa.float64(), "AB mag", "unlensed source magnitude, r"),
    "src_mag_z": (pa.float64(), "AB mag", "unlensed source magnitude, z"),
    "src_amp_g": (pa.float64(), "nmgy/arcsec^2", "Sersic amplitude (surface brightness at R_e), g"),
    "src_amp_r": (pa.float64(), "nmgy/arcsec^2", "Sersic amplitude, r"),
    "src_amp_z": (pa.float64(), "nmgy/arcsec^2", "Sersic amplitude, z"),
    "src_r_eff_arcsec": (pa.float64(), "arcsec", "source half-light radius (geometric mean of the semi-axes)"),
    "src_n_sersic": (pa.float64(), "-", "source Sersic index"),
    "src_q": (pa.float64(), "-", "source axis ratio"),
    "src_phi_rad": (pa.float64(), "rad", "source position angle"),
    "arc_snr_r": (pa.float64(), "-", "matched-filter S/N of the arc in r alone"),
    "arc_flux_r": (pa.float64(), "nmgy", "total r flux of the arc in the stamp"),
    "arc_core_flux_frac_r": (pa.float64(), "-", "fraction of the arc's r flux inside the central 10x10 pixels"),
    "n_images": (pa.int64(), "-", "number of point-source images of the source centre"),
    "inner_image_r_arcsec": (pa.float64(), "arcsec", "distance of the innermost image from the lens centre (NaN if one image)"),
    "total_magnification": (pa.float64(), "-", "sum of |mu| over the images of the source centre"),
    "supersampling": (pa.int64(), "-", "sub-pixels per pixel side used for rendering"),
    "preset": (pa.string(), "-", "simulator preset"),
    "seed": (pa.int64(), "-", "simulator seed"),
}
REQUIRED = ("stamp_npz", "ctrl_stamp_npz", "ra", "dec", "brickname", "theta_e_arcsec", "psf_fwhm_used_r", "arc_snr")
NPZ_COLUMNS = ("stamp_npz", "ctrl_stamp_npz")


def arrow_schema(columns) -> pa.Schema:
    return pa.schema([(c, SCHEMA[c][0]) for c in columns])


def schema_markdown() -> str:
    """The column reference as a Markdown table."""
    rows = ["| column | type | unit | meaning | required |", "|---|---|---|---|---|"]
    for c, (t, unit, desc) in SCHEMA.items():
        rows.append(f"| `{c}` | {t} | {unit} | {desc} | {'yes' if c in REQUIRED else ''} |")
    return "\n".join(rows)


def encode_npz(image: np.ndarray) -> bytes:
    """(3, 64, 64) array -> npz bytes with image_g, image_r, image_z (float32)."""
    buf = io.BytesIO()
    np.savez(buf, **{f"image_{b}": image[i].astype(np.float32) for i, b in enumerate(BANDS)})
    return buf.getvalue()


def decode_npz(blob: bytes, where: str = "") -> np.ndarray:
    """npz bytes -> (3, 64, 64) float32; never unpickles; errors name ``where``."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrs = []
            for b in BANDS:
                key = f"image_{b}"
                if key not in z.files:
                    raise ValueError(f"{where}: npz has no key {key!r} (keys: {z.files})")
                a = z[key]
                if a.shape != (STAMP_SIZE, STAMP_SIZE):
                    raise ValueError(f"{where}: {key} has shape {a.shape}, expected ({STAMP_SIZE}, {STAMP_SIZE})")
                arrs.append(a.astype(np.float32, copy=False))
    except ValueError:
        raise
    except Exception as exc:  # zipfile/pickle errors from a malformed blob
        raise ValueError(f"{where}: unreadable npz ({type(exc).__name__}: {exc})") from None
    return np.stack(arrs)


def _files(path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.rglob("*.parquet"))
        if not files:
            raise ValueError(f"{p}: directory holds no .parquet files")
        return files
    if not p.exists():
        raise ValueError(f"{p}: no such file or directory")
    return [p]


def read_metadata(path, columns=None) -> pd.DataFrame:
    """All non-image columns (or ``columns``) of a file or directory of Parquet files."""
    ds = pads.dataset([str(f) for f in _files(path)], format="parquet")
    names = [c for c in ds.schema.names if c not in NPZ_COLUMNS] if columns is None else list(columns)
    return ds.to_table(columns=names).to_pandas()


def load(path, rows=None, which=("stamp_npz", "ctrl_stamp_npz"), batch_rows: int = 4096):
    """Load images and metadata.

    Returns ``(images, meta)`` where ``images`` maps each requested npz column to an
    (N, 3, 64, 64) float32 array; ``rows`` (positions in file order) selects a subset without
    decoding the others. Reads in record batches, so only the selected images are materialised.
    """
    meta = read_metadata(path)
    sel = np.arange(len(meta)) if rows is None else np.asarray(rows)
    out = {c: np.empty((len(sel), 3, STAMP_SIZE, STAMP_SIZE), np.float32) for c in which}
    pos_of = {int(r): i for i, r in enumerate(sel)}
    offset = 0
    for f in _files(path):
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(which)):
            n = batch.num_rows
            hits = [r for r in range(offset, offset + n) if r in pos_of]
            for c in which:
                col = batch.column(c)
                for r in hits:
                    out[c][pos_of[r]] = decode_npz(col[r - offset].as_py(), f"{f}: row {r - offset}, column {c}")
            offset += n
    return out, meta.iloc[sel].reset_index(drop=True)


class AtomicParquetWriter:
    """Write Parquet to a temporary file in the target directory; rename on success only."""

    def __init__(self, path, schema: pa.Schema):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(suffix=".parquet.tmp", dir=self.path.parent, prefix=f".{self.path.name}.")
        os.close(fd)
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.schema = schema

    def write(self, frame: pd.DataFrame) -> None:
        self.writer.write_table(pa.Table.from_pandas(frame[self.schema.names], schema=self.schema, preserve_index=False))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.writer.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            Path(self.tmp).unlink(missing_ok=True)
        return False
