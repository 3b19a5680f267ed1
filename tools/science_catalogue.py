"""tools/science_catalogue.py: write a synthetic morphcat catalogue directly with h5py, in the layout morphcat's
reader expects (docs/catalogue.md: layout attribute, galaxies/id_str, galaxies/status, embedding/features), for the
science tests and the 10-million-row figures in docs/science.md. Embeddings are a low-rank signal plus noise (so PCA
has structure), optionally with planted outliers and failed rows. Not a model: no images, no morphology.

    python3 tools/science_catalogue.py OUT.h5 --rows 10000000 --dim 1280 --dtype float16
"""
import argparse

import h5py
import numpy as np


def write(path, rows, dim, dtype="float32", seed=0, rank=12, outliers=0, failed=0, chunk=100000, ids=None,
          features=None, outlier_scale=1.5):
    """Write the catalogue; returns (ids, status) as numpy arrays. features: an (rows, dim) array to store instead
    of the generated ones (small catalogues only). Planted outliers are the rows listed in the file's
    `planted_outliers` attribute (tests read it)."""
    rng = np.random.default_rng(seed)
    if ids is None:
        ids = np.array(["G%09d" % i for i in range(rows)])
    status = np.ones(rows, np.uint8)
    if failed:
        status[rng.choice(rows, failed, replace=False)] = 3
    ok_rows = np.flatnonzero(status == 1)
    planted = np.sort(rng.choice(ok_rows, outliers, replace=False)) if outliers else np.zeros(0, np.int64)
    basis = rng.normal(size=(rank, dim)) * np.linspace(3.0, 0.5, rank)[:, None]
    offset = rng.normal(size=dim) * 2.0
    width = max(len(s) for s in ids) + 1 if len(ids) else 2
    # noise pool reused (shuffled) across chunks so 10 million rows cost minutes, not an hour
    pool = rng.normal(size=(min(chunk, rows) + 7, dim)).astype(np.float32) * 0.3
    with h5py.File(path, "w") as f:
        f.attrs["layout"] = "morphcat-catalogue-1"
        f.attrs["embedding_dtype"] = dtype
        f.attrs["planted_outliers"] = planted
        g = f.create_group("galaxies")
        g.create_dataset("id_str", data=np.array(ids, dtype="S%d" % width))
        g.create_dataset("status", data=status)
        ds = f.create_group("embedding").create_dataset("features", (rows, dim), dtype=dtype,
                                                       chunks=(max(1, min(rows, (1 << 20) // (dim * 2))), dim))
        for r0 in range(0, rows, chunk):
            n = min(chunk, rows - r0)
            if features is not None:
                x = np.asarray(features[r0:r0 + n], np.float32)
            else:
                lat = rng.normal(size=(n, rank)).astype(np.float32)
                x = lat @ basis.astype(np.float32) + offset.astype(np.float32)
                x += pool[rng.permutation(pool.shape[0])[:n]]
                sel = planted[(planted >= r0) & (planted < r0 + n)] - r0
                if len(sel):  # a random offset of outlier_scale per feature
                    x[sel] += rng.normal(size=(len(sel), dim)).astype(np.float32) * outlier_scale
                x[status[r0:r0 + n] != 1] = np.nan
            ds[r0:r0 + n] = x.astype(dtype)
    return ids, status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--outliers", type=int, default=0)
    ap.add_argument("--failed", type=int, default=0)
    a = ap.parse_args()
    write(a.out, a.rows, a.dim, a.dtype, a.seed, outliers=a.outliers, failed=a.failed)


if __name__ == "__main__":
    main()
