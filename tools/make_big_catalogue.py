"""tools/make_big_catalogue.py: a large catalogue in morphcat's HDF5 layout (docs/catalogue.md), written with h5py in
chunks, for measuring `morphcat export` and `morphcat report` at survey scale (docs/report.md). Values are random but
shaped like a job's: per-question Dirichlet fractions, proportion asked along the schema's tree, 1% failed rows with
messages, 0..6 clumps per galaxy. The files it points to do not exist (the report's mosaics then show grey tiles).

    python3 tools/make_big_catalogue.py OUT.h5 [--rows 1000000] [--schema gz_decals_dr5] [--clumps 20]
"""
import argparse
import json
import os

import h5py
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--schema", default="gz_decals_dr5")
    ap.add_argument("--clumps", type=int, default=20)
    a = ap.parse_args()
    sch = json.load(open(os.path.join(ROOT, "nn", "schemas", a.schema + ".json")))
    qs = [(q["name"], [q["name"] + x for x in q["answers"]], q["depends_on"]) for q in sch["questions"]]
    cols = [c for _, ans, _ in qs for c in ans]
    A, N, K, B = len(cols), a.rows, a.clumps, 100000
    rng = np.random.default_rng(1)
    s = lambda w: h5py.string_dtype("utf-8", w)
    with h5py.File(a.out, "w") as f:
        for k, v in {"layout": "morphcat-catalogue-1", "model_arch": "convnext_nano", "schema": a.schema,
                     "preprocessing": "gz_decals:bands=g;r;z,zoom=1.2,flip=0,quantize=1,max_blank=0.2",
                     "release": "dr10", "morphcat_version": "0.1.0", "n_rows": str(N),
                     "model_note": "synthetic values from tools/make_big_catalogue.py"}.items():
            f.attrs[k] = v
        g = f.create_group("galaxies")
        spec = {"id_str": s(32), "file": s(128), "ra": "f8", "dec": "f8", "radec_source": "u1", "status": "u1",
                "message": s(256), "file_xxh3": s(33), "release": s(64)}
        ds = {k: g.create_dataset(k, (N,), dtype=t, chunks=(8192,)) for k, t in spec.items()}
        m = f.create_group("morphology")
        m.attrs["answer_columns"] = cols
        md = {k: m.create_dataset(k, (N, A), dtype="f4", chunks=(4096, A)) for k in
              ("concentration", "fraction", "fraction_90pc_lower", "fraction_90pc_upper", "proportion_asked")}
        c = f.create_group("clumps")
        c.attrs["class_names"] = ["background", "clump", "odd_clump"]
        c.attrs["max_per_galaxy"] = str(K)
        cd = {"count": c.create_dataset("count", (N,), "u2", chunks=(8192,)),
              "status": c.create_dataset("status", (N,), "u1", chunks=(8192,)),
              "label": c.create_dataset("label", (N, K), "u1", chunks=(4096, K)),
              "score": c.create_dataset("score", (N, K), "f4", chunks=(4096, K)),
              "box": c.create_dataset("box", (N, K, 4), "f4", chunks=(4096, K, 4)),
              "ra": c.create_dataset("ra", (N, K), "f8", chunks=(4096, K)),
              "dec": c.create_dataset("dec", (N, K), "f8", chunks=(4096, K))}
        for r0 in range(0, N, B):
            n = min(B, N - r0)
            idx = np.arange(r0, r0 + n)
            st = np.where(rng.random(n) < 0.01, 3, 1).astype(np.uint8)
            ds["id_str"][r0:r0 + n] = np.array(["g%09d" % i for i in idx], dtype=object)
            ds["file"][r0:r0 + n] = np.array(["/survey/cutouts/%06d/g%09d.fits" % (i // 1000, i) for i in idx],
                                             dtype=object)
            ds["ra"][r0:r0 + n] = rng.uniform(0, 360, n)
            ds["dec"][r0:r0 + n] = rng.uniform(-30, 80, n)
            ds["radec_source"][r0:r0 + n] = 1
            ds["status"][r0:r0 + n] = st
            msg = np.array([""] * n, dtype=object)
            bad = np.nonzero(st != 1)[0]
            msg[bad] = ["g%09d: /survey/cutouts/%06d/g%09d.fits: truncated: file ends after 1 of 3 planes" %
                        (r0 + i, (r0 + i) // 1000, r0 + i) for i in bad]
            ds["message"][r0:r0 + n] = msg
            ds["release"][r0:r0 + n] = np.array(["dr10"] * n, dtype=object)
            conc = (1 + 100 * rng.random((n, A))).astype(np.float32)
            frac = np.empty_like(conc)
            asked = np.empty_like(conc)
            col = 0
            pos = {}
            for name, ans, dep in qs:
                k = len(ans)
                frac[:, col:col + k] = conc[:, col:col + k] / conc[:, col:col + k].sum(1, keepdims=True)
                p = np.ones(n, np.float32) if dep is None else frac[:, pos[dep]] * asked[:, pos[dep]]
                asked[:, col:col + k] = p[:, None]
                for j, x in enumerate(ans):
                    pos[x] = col + j
                col += k
            lo, hi = np.clip(frac - 0.1, 0, 1), np.clip(frac + 0.1, 0, 1)
            for k_, v in (("concentration", conc), ("fraction", frac), ("fraction_90pc_lower", lo),
                          ("fraction_90pc_upper", hi), ("proportion_asked", asked)):
                v[st != 1] = np.nan
                md[k_][r0:r0 + n] = v
            cnt = np.where(st == 1, rng.integers(0, 7, n), 0).astype(np.uint16)
            live = np.arange(K) < cnt[:, None]
            cd["count"][r0:r0 + n] = cnt
            cd["status"][r0:r0 + n] = np.where(st == 1, 1, 0)
            cd["label"][r0:r0 + n] = np.where(live, rng.integers(1, 3, (n, K)), 0)
            cd["score"][r0:r0 + n] = np.where(live, rng.uniform(0.3, 1, (n, K)), np.nan).astype(np.float32)
            xy = rng.uniform(20, 200, (n, K, 2))
            cd["box"][r0:r0 + n] = np.where(live[..., None], np.concatenate([xy, xy + 10], axis=2), np.nan)
            cd["ra"][r0:r0 + n] = np.where(live, rng.uniform(0, 360, (n, K)), np.nan)
            cd["dec"][r0:r0 + n] = np.where(live, rng.uniform(-30, 80, (n, K)), np.nan)
            print("rows %d..%d" % (r0, r0 + n - 1), flush=True)


if __name__ == "__main__":
    main()
