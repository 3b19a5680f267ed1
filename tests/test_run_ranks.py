"""The catalogue job end to end under mpirun with 1, 2 and 3 ranks on a synthetic survey with broken files: the
same catalogue content every time (compared by id_str, bit for bit), every broken file its own row, status and
message, the good rows complete and consistent, the catalogue read back with h5py; a rerun of a finished job
does nothing and says so; embeddings agree with `morphcat forward` on the same preprocessed tensors."""
import csv
import os

import h5py
import numpy as np

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey()
model = pl.model()
outs = {}
for n in (1, 2, 3):
    out = os.path.join(mctest.tmpdir(), "cat.h5")
    cp = mctest.mpirun(n, [mctest.MORPHCAT] + pl.run_args(sv, model, out), check=False, timeout=600)
    c.check(cp.returncode == 0, "%d rank(s): exit 0 (%d)" % (n, cp.returncode))
    if cp.returncode:
        print(cp.stdout, cp.stderr[-3000:])
        continue
    print(cp.stdout.strip())
    outs[n] = pl.read_catalogue(out)
    outs[n][0]["_path"] = out

if 1 in outs:
    d1, a1 = outs[1]
    for n in (2, 3):
        if n not in outs:
            continue
        dn, an = outs[n]
        ids1, idsn = d1["galaxies/id_str"], dn["galaxies/id_str"]
        c.check(np.array_equal(ids1, idsn), "%d ranks: same id_str in the same order" % n)
        for k in sorted(d1):
            if k.startswith("_"):
                continue
            c.check(k in dn and pl.same_values(d1[k], dn[k]), "%d ranks: %s equal to 1 rank's, bit for bit" % (n, k))

    d, attrs = outs[1]
    ids = d["galaxies/id_str"].astype(str)
    st = d["galaxies/status"]
    msg = d["galaxies/message"].astype(str)
    with open(os.path.join(sv, "manifest.csv")) as f:
        man = list(csv.DictReader(f))
    c.check(list(ids) == [r["id_str"] for r in man], "rows are the manifest's, in order, each once")
    c.check(not (st == 0).any(), "no row left pending")
    with open(os.path.join(sv, "broken.csv")) as f:
        broken = list(csv.DictReader(f))
    row_of = {s: i for i, s in enumerate(ids)}
    for b in broken:
        i = row_of.get(b["id_str"])
        ok = i is not None and st[i] >= 2 and b["id_str"] in msg[i] and len(msg[i]) > len(b["id_str"]) + 5
        c.check(ok, "broken %-24s -> status %s, message %r" % (
            b["id_str"], None if i is None else st[i], None if i is None else msg[i]))
    good = st == 1
    c.check(good.sum() == len(ids) - len(broken), "every other row is ok (%d ok, %d broken)" % (good.sum(), len(broken)))
    conc, frac = d["morphology/concentration"], d["morphology/fraction"]
    c.check(np.isfinite(conc[good]).all() and (conc[good] >= 1).all() and (conc[good] <= 101).all(),
            "concentrations of good rows finite, in [1, 101]")
    c.check(np.isnan(conc[~good]).all() and np.isnan(d["embedding/features"][~good]).all(), "failed rows hold NaN")
    with h5py.File(outs[1][0]["_path"], "r") as f:
        c.check(f.attrs["schema"] == "decals_all_campaigns" and f.attrs["model_arch"] == "efficientnet_b0",
                "attributes: schema chosen from the head size, model")
        c.check(f["columns/smooth-or-featured-dr5_smooth_fraction"].shape == (len(ids),), "Zoobot-named column views")
        lo, hi = f["morphology/fraction_90pc_lower"][:], f["morphology/fraction_90pc_upper"][:]
        c.check(np.all(lo[good] <= frac[good]) and np.all(frac[good] <= hi[good]), "90% interval brackets the fraction")
    # content checksums: XXH3-128 of each good file's bytes, as Python's xxhash computes it
    import xxhash
    sums = d["galaxies/file_xxh3"].astype(str)
    files = d["galaxies/file"].astype(str)
    okrows = np.nonzero(good)[0]
    c.check(all(sums[i] == xxhash.xxh3_128_hexdigest(open(files[i], "rb").read()) for i in okrows),
            "file_xxh3 of every good row = xxhash.xxh3_128_hexdigest of the file")
    # sky positions: from the manifest, else from the WCS
    src = d["galaxies/radec_source"]
    had = np.array([r["ra"] != "" and r["dec"] != "" for r in man])
    c.check(((src == 1) == had)[good].all(), "radec_source 1 exactly where the manifest has ra, dec")
    from_wcs = good & ~had
    c.check(from_wcs.any() and (src[from_wcs] == 2).all() and np.isfinite(d["galaxies/ra"][from_wcs]).all(),
            "rows without manifest ra/dec take them from the WCS (%d rows)" % from_wcs.sum())

    # a finished job: nothing to do, file untouched
    p = outs[1][0]["_path"]
    before = os.path.getmtime(p), os.path.getsize(p)
    cp = mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, p), check=False, timeout=300)
    c.check(cp.returncode == 0 and "nothing to do" in cp.stdout, "rerun of a finished job: 'nothing to do', exit 0")
    c.check((os.path.getmtime(p), os.path.getsize(p)) == before, "rerun of a finished job leaves the file untouched")

    # cross-check with `morphcat forward` on the same galaxies (different batch: rounding may differ slightly)
    first_good = [i for i in np.nonzero(good)[0][:3]]
    xs = []
    for i in first_good:
        t = os.path.join(mctest.tmpdir(), "t.npy")
        mctest.run(["cutout", d["galaxies/file"][i].decode(), "--recipe", "auto", "--size", "64", "--chans", "1",
                    "--tensor", t])
        xs.append(np.load(t))
    xp = os.path.join(mctest.tmpdir(), "x.npy")
    np.save(xp, np.stack(xs).astype(np.float32))
    ep = os.path.join(mctest.tmpdir(), "e.npy")
    mctest.run(["forward", "--model", model, "--input", xp, "--output", ep])
    e = np.load(ep)
    err = mctest.rel_max_err(d["embedding/features"][first_good], e)
    c.check(err < 1e-5, "catalogue embeddings = morphcat forward on morphcat cutout's tensors (rel err %.1e < 1e-5)" % err)
c.finish()
