"""tests/test_mosaic_tiles_match_cutouts.py: `morphcat mosaic` shows the requested galaxies in the requested order, each
tile the galaxy's own cutout as the catalogue's recipe renders it. The test renders every requested cutout itself with
the independent numpy reading of docs/preprocessing.md (tools/preprocess_ref.py, decoding with astropy/PIL), cuts the
tiles out of the PNG by the documented geometry (8 a row, 4 px padding, a 16 px label strip) and requires each tile to
match its own galaxy within the preprocessing tolerance (max 1/255, <= 0.5% of pixels differ) and not any other
requested galaxy. Selections: --ids, --from a CSV (id_str not the first column), --answer --top N (checked against the
top N computed with h5py); --boxes changes pixels only at the catalogue's boxes mapped through the view; a failed
galaxy gets a grey tile, a line on stderr and exit 3; an unknown id is refused with one line.
"""
import csv
import os
import sys

import numpy as np

import mctest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
S, COLS, PAD, LABEL = 64, 8, 4, 16


def tiles(png, n):
    from PIL import Image

    a = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
    cols = min(n, COLS)
    rows = (n + cols - 1) // cols
    ok = a.shape == (PAD + rows * (S + LABEL + PAD), PAD + cols * (S + PAD), 3)
    out = []
    for i in range(n):
        x, y = PAD + (i % cols) * (S + PAD), PAD + (i // cols) * (S + LABEL + PAD)
        out.append(a[y:y + S, x:x + S])
    return ok, a.shape, out


def expected(path, spec):
    import preprocess_ref as P

    planes, names, kind = P.load(path)
    t = P.apply(planes, names, kind, spec, chans=3, size=S)
    return np.floor(np.clip(t, 0, 1) * 255 + 0.5).astype(np.int64).transpose(1, 2, 0)


def matches(tile, want):
    d = np.abs(tile - want)
    return d.max() <= 1 and (d > 0).mean() <= 0.005


def check_order(c, png, rows, ref, spec, what):
    ok, shape, ts = tiles(png, len(rows))
    c.check(ok, "%s: the PNG is %s, as the documented grid for %d tiles" % (what, shape, len(rows)))
    if not ok:
        return
    want = [expected(ref["file"][r], spec) for r in rows]
    own = [matches(ts[i], want[i]) for i in range(len(rows))]
    worst = max(int(np.abs(ts[i] - want[i]).max()) for i in range(len(rows)))
    other = [i for i in range(len(rows)) for j in range(len(rows))
             if j != i and ref["file"][rows[j]] != ref["file"][rows[i]] and matches(ts[i], want[j])]
    c.check(all(own), "%s: each of %d tiles is its own galaxy's cutout by the recipe (worst %d/255)" %
            (what, len(rows), worst))
    c.check(not other, "%s: no tile matches another requested galaxy (order kept): %s" % (what, other))


def main():
    if not os.access(mctest.MORPHCAT, os.X_OK):
        mctest.skip("morphcat is not built")
    import report_lib

    c = mctest.Checks()
    cat, _ = report_lib.catalogue()
    ref = report_lib.read(cat)
    spec = ref["attrs"]["preprocessing"]
    tmp = mctest.tmpdir()
    ok_rows = [int(i) for i in np.nonzero(ref["status"] == 1)[0]]
    pngs = [i for i in ok_rows if ref["file"][i].endswith(".png")]
    c.check(len(ok_rows) >= 8 and pngs, "the catalogue has %d ok galaxies, %d of them PNG" % (len(ok_rows), len(pngs)))
    # an order that is not the catalogue's, FITS and PNG mixed
    rows = ok_rows[::-1][:6] + pngs[:1]
    ids = [ref["id_str"][r] for r in rows]
    out = os.path.join(tmp, "ids.png")
    r = mctest.run(["mosaic", "--catalogue", cat, "--ids", ",".join(ids), "--output", out, "--size", str(S)])
    c.check(r.returncode == 0 and "7 galaxies" in r.stdout, "--ids: exit 0: %s" % r.stdout.strip())
    check_order(c, out, rows, ref, spec, "--ids")

    from_csv = os.path.join(tmp, "similar.csv")
    rows2 = ok_rows[1:5]
    with open(from_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "id_str", "distance"])
        for k, i in enumerate(rows2):
            w.writerow([k, ref["id_str"][i], 0.1 * k])
    out = os.path.join(tmp, "from.png")
    mctest.run(["mosaic", "--catalogue", cat, "--from", from_csv, "--output", out, "--size", str(S)])
    check_order(c, out, rows2, ref, spec, "--from CSV")

    a = ref["answers"].index("smooth-or-featured-dr12_smooth") if "smooth-or-featured-dr12_smooth" in ref["answers"] else 0
    col = ref["answers"][a] + "_fraction"
    v = np.where(ref["status"] == 1, ref["_fraction"][:, a], -np.inf)
    top = [int(i) for i in np.lexsort((np.arange(len(v)), -v))[:5]]
    out = os.path.join(tmp, "top.png")
    r = mctest.run(["mosaic", "--catalogue", cat, "--answer", col, "--top", "5", "--output", out, "--size", str(S)])
    check_order(c, out, top, ref, spec, "--answer %s --top 5 (h5py's top 5)" % col)

    # boxes: only pixels at the mapped boxes (and their score labels) change
    cl = ref["clumps"]
    br = [i for i in ok_rows if cl["count"][i] >= 3][:3]
    out_b = os.path.join(tmp, "boxes.png")
    plain = os.path.join(tmp, "plain.png")
    bid = ",".join(ref["id_str"][i] for i in br)
    mctest.run(["mosaic", "--catalogue", cat, "--ids", bid, "--output", plain, "--size", str(S)])
    r = mctest.run(["mosaic", "--catalogue", cat, "--ids", bid, "--output", out_b, "--size", str(S), "--boxes"])
    _, _, tb = tiles(out_b, len(br))
    _, _, tp = tiles(plain, len(br))
    outside, changed, edges_hit, edges = 0, 0, 0, 0
    for k, i in enumerate(br):
        import preprocess_ref as P

        planes, _, _ = P.load(ref["file"][i])
        h, w = planes.shape[-2:]
        side = min(h, w) / P.parse_spec(spec)["zoom"]  # the view's square (docs/preprocessing.md 6); flip 0
        bx, by, f = (w - side) / 2, (h - side) / 2, S / side
        allowed = np.zeros((S, S), bool)
        diff = np.any(tb[k] != tp[k], axis=2)
        for s in range(int(cl["count"][i])):
            x1, y1, x2, y2 = [(cl["box"][i, s, j] - (bx if j % 2 == 0 else by)) * f for j in range(4)]
            X0, Y0, X1, Y1 = [int(np.clip(np.floor(v_), 0, S)) for v_ in (x1 - 3, y1 - 3, x2 + 4, y2 + 4)]
            allowed[Y0:Y1, X0:X1] = True
            # the score label: above the box (or under it near the top), about 30 px wide
            ly0 = y1 - 14 if y1 > 10 else y2
            allowed[int(np.clip(ly0, 0, S)):int(np.clip(ly0 + 16, 0, S)), int(np.clip(x1, 0, S)):int(np.clip(x1 + 32, 0, S))] = True
            xm, ym = int((x1 + x2) / 2), int(round(y1))
            if 0 <= xm < S and 1 <= ym < S - 1:
                edges += 1
                edges_hit += int(diff[ym - 1:ym + 2, xm].any())
        changed += int(diff.sum())
        outside += int((diff & ~allowed).sum())
    c.check(changed > 0 and outside == 0, "--boxes: %d pixels change, %d of them away from the catalogue's boxes" %
            (changed, outside))
    c.check(edges > 0 and edges_hit == edges, "--boxes: %d of %d box top edges drawn where the box maps" %
            (edges_hit, edges))

    failed = [int(i) for i in np.nonzero(ref["status"] > 1)[0]]
    out = os.path.join(tmp, "failed.png")
    r = mctest.run(["mosaic", "--catalogue", cat, "--ids", ",".join([ids[0], ref["id_str"][failed[0]]]), "--output",
                    out, "--size", str(S)], check=False)
    _, _, tf = tiles(out, 2) if os.path.exists(out) else (0, 0, [np.zeros((S, S, 3))] * 2)
    grey = np.mean(tf[1][:, :, 0] == tf[1][:, :, 1]) > 0.8 and np.median(tf[1]) > 60
    c.check(r.returncode == 3 and ref["id_str"][failed[0]] in r.stderr and grey and matches(tf[0], expected(
        ref["file"][rows[0]], spec)), "a failed galaxy: grey tile, named on stderr, exit 3, the other tile drawn: %s" %
        r.stderr.strip()[-200:])
    r = mctest.run(["mosaic", "--catalogue", cat, "--ids", "no_such_galaxy", "--output", out], check=False)
    lines = r.stderr.strip().splitlines()
    c.check(r.returncode == 1 and len(lines) == 1 and "no_such_galaxy" in lines[0],
            "an unknown id: exit 1, one line naming it: %s" % lines)
    c.finish()


if __name__ == "__main__":
    main()
