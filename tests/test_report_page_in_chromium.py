"""tests/test_report_page_in_chromium.py: `morphcat report` writes a static page that Debian's headless Chromium renders:
the screenshot is not blank, every image the page references loads (naturalWidth > 0, checked by a script this test
adds to a copy of the page, and checked to notice an image removed on purpose), every referenced file exists and
decodes at the size the page declares, the page itself has no scripts and fetches nothing from elsewhere, and every
failed galaxy of the catalogue is named on the page with its message. Also: the provenance shows the model, the
recipe, the release, the software version and the precision ("fp32" without a `precision` attribute, the attribute
when present); counts by status equal h5py's; the clumps section gives the catalogue's total; --max-failures caps the
list and says how many there are in all. Chromium is started and stopped by the test (one process per page).
"""
import html.parser
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

import mctest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
PROBE = ('<script>window.addEventListener("load",function(){var b=[],im=document.images;for(var i=0;i<im.length;i++)'
         '{if(!(im[i].complete&&im[i].naturalWidth>0))b.push(im[i].getAttribute("src"));}'
         'document.body.setAttribute("data-images",String(im.length));'
         'document.body.setAttribute("data-broken",b.join(" "));});</script>')


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.text, self.imgs, self.tags, self.links = [], [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.imgs.append(a)
        for k in ("src", "href"):
            if k in a:
                self.links.append(a[k])

    def handle_data(self, d):
        self.text.append(d)


def parse(path):
    p = Page()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    p.alltext = " ".join(" ".join(p.text).split())
    return p


def chromium(args, profile, timeout=120):
    return subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=" + profile] + args, capture_output=True, text=True,
                          timeout=timeout)


def probe(c, d, profile, what):
    """(images, broken) as Chromium's DOM after load reports them for a copy of page d with the probe script."""
    src = os.path.join(d, "index.html")
    probe_page = os.path.join(d, "probe.html")
    with open(src, encoding="utf-8") as f:
        page = f.read()
    with open(probe_page, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", PROBE + "</body>"))
    r = chromium(["--dump-dom", "file://" + probe_page], profile)
    os.remove(probe_page)
    m = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-broken="([^"]*)"', r.stdout)
    c.check(m is not None, "%s: Chromium loaded the page and ran the probe (exit %d)" % (what, r.returncode))
    return (int(m.group(1)), m.group(2).split()) if m else (0, ["?"])


def main():
    if not os.access(mctest.MORPHCAT, os.X_OK):
        mctest.skip("morphcat is not built")
    if not os.access(CHROMIUM, os.X_OK):
        mctest.skip("Debian's chromium is not installed (tools/install-deps.sh installs it)")
    from PIL import Image

    import report_lib

    c = mctest.Checks()
    cat, _ = report_lib.catalogue()
    ref = report_lib.read(cat)
    tmp = mctest.tmpdir()
    profile = os.path.join(tmp, "chromium-profile")
    d = os.path.join(tmp, "report")
    r = mctest.run(["report", cat, "--out", d])
    c.check(d in r.stdout and os.path.exists(os.path.join(d, "index.html")), "report prints where it is: %s" %
            r.stdout.strip())
    p = parse(os.path.join(d, "index.html"))
    c.check("script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags,
            "the page has no scripts, stylesheet links or frames")
    remote = [x for x in p.links if re.match(r"^[a-z]+:", x) or x.startswith("//")]
    c.check(not remote, "every reference is a local relative file: %s" % remote[:3])

    # every referenced image exists and decodes at the size the page gives it
    bad = []
    for im in p.imgs:
        f = os.path.join(d, im["src"])
        try:
            with Image.open(f) as pic:
                pic.load()
                if pic.size != (int(im["width"]), int(im["height"])):
                    bad.append("%s is %s, page says %sx%s" % (im["src"], pic.size, im["width"], im["height"]))
        except Exception as e:  # noqa: BLE001 - any decoding failure is the finding
            bad.append("%s: %s" % (im["src"], e))
    n_q = len({a.split("_")[0] for a in ref["answers"]})
    c.check(len(p.imgs) >= n_q + 3 and not bad, "%d images referenced (%d questions' histograms, mosaics, clumps), all "
            "decode at their declared size: %s" % (len(p.imgs), n_q, bad[:3]))

    n_img, broken = probe(c, d, profile, "the report")
    c.check(n_img == len(p.imgs) and not broken, "in Chromium all %d images load (naturalWidth > 0); broken: %s" %
            (n_img, broken))
    # the probe notices a missing picture (so the check above can fail)
    d2 = os.path.join(tmp, "report_broken")
    shutil.copytree(d, d2)
    gone = p.imgs[0]["src"]
    os.remove(os.path.join(d2, gone))
    n2, broken2 = probe(c, d2, profile, "a copy with one picture removed")
    c.check(broken2 == [gone], "the probe reports the removed %s as broken: %s" % (gone, broken2))

    shot = os.path.join(tmp, "shot.png")
    r = chromium(["--window-size=1200,1600", "--screenshot=" + shot, "file://" + os.path.join(d, "index.html")], profile)
    ok = os.path.exists(shot)
    if ok:
        a = np.asarray(Image.open(shot).convert("RGB")).astype(np.float64)
        colours = len(np.unique(a.reshape(-1, 3)[::7], axis=0))
        dark = float((a.mean(axis=2) < 128).mean())
        c.check(a.shape[:2] == (1600, 1200) and a.std() > 20 and colours > 100 and 0.005 < dark < 0.9,
                "the screenshot is not blank: std %.1f, %d colours, %.1f%% dark pixels" % (a.std(), colours, 100 * dark))
    else:
        c.check(False, "Chromium wrote a screenshot (exit %d): %s" % (r.returncode, r.stderr[-300:]))

    failed = np.nonzero(ref["status"] > 1)[0]
    missing = [ref["id_str"][i] for i in failed if ref["id_str"][i] not in p.alltext or
               " ".join(ref["message"][i].split()) not in p.alltext]
    c.check(len(failed) >= 3 and not missing, "all %d failed galaxies are named on the page with their messages; "
            "missing: %s" % (len(failed), missing))
    counts = {"ok": int((ref["status"] == 1).sum()), "missing_file": int((ref["status"] == 2).sum()),
              "corrupt_file": int((ref["status"] == 3).sum())}
    c.check(all(re.search(r"\b%s %d\b" % (k, v), p.alltext) for k, v in counts.items() if v),
            "counts by status equal h5py's: %s" % counts)
    at = ref["attrs"]
    prov = [at["model_arch"], at["preprocessing"], at["morphcat_version"], "morphcat %s" % at["morphcat_version"]]
    c.check(all(x in p.alltext for x in prov) and "precision fp32" in p.alltext and
            re.search(r"\brelease\b", p.alltext), "provenance: model, recipe, release, versions, precision fp32")
    total = int(ref["clumps"]["count"].sum())
    c.check("%d clumps in" % total in p.alltext, "the clumps section gives the catalogue's %d clumps" % total)

    # precision from the catalogue's attribute; the failure list capped with its count
    cat2 = os.path.join(tmp, "cat_fp16.h5")
    shutil.copy(cat, cat2)
    with h5py.File(cat2, "r+") as f:
        f.attrs["precision"] = "fp16"
    d3 = os.path.join(tmp, "report_capped")
    mctest.run(["report", cat2, "--out", d3, "--max-failures", "2"])
    p3 = parse(os.path.join(d3, "index.html"))
    listed = [ref["id_str"][i] for i in failed if ref["id_str"][i] in p3.alltext]
    c.check("precision fp16" in p3.alltext, "the precision attribute is shown when the catalogue has one")
    c.check(len(listed) == 2 and ("first 2 of %d failed" % len(failed)) in p3.alltext,
            "--max-failures 2: two listed and the page says 'first 2 of %d'" % len(failed))
    r = mctest.run(["report", os.path.join(tmp, "absent.h5"), "--out", os.path.join(tmp, "r4")], check=False)
    lines = r.stderr.strip().splitlines()
    c.check(r.returncode == 1 and len(lines) == 1 and "absent.h5" in lines[0], "a missing catalogue: exit 1, one line: "
            "%s" % lines)
    c.finish()


if __name__ == "__main__":
    main()
