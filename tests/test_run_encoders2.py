"""morphcat run end to end with the new families: a MaxViT (maxvit_tiny_rw_224) and an EfficientNetV2
(tf_efficientnetv2_s) Lightning checkpoint with a 34-answer Dirichlet head (gz_decals_dr5) over a small synthetic
survey at 224 px. For each: the stored concentrations are the Dirichlet head of the stored embeddings; a run killed with SIGKILL (mpirun and every rank) and rerun completes with
every row once, bit-identical to an uninterrupted run; the same command on the finished catalogue does nothing;
a data-release rerun computes only the added galaxies and carries every other row bit for bit.
Weights: the encoders2 goldens' own (refdata/materialize.py; the EfficientNetV2 gets a seeded head), in a
temporary folder. Skips without ../shared."""
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import torch

import mctest
import pipeline_lib as pl

c = mctest.Checks()
enc2 = mctest.shared_path("refdata", "encoders2")
sys.path.insert(0, os.path.dirname(enc2))
import materialize  # noqa: E402

rng = random.Random(11)
tmp = mctest.tmpdir()
sv = pl.survey(n=20, size=64, seed=12, broken=3)


def ckpt_maxvit():
    out = os.path.join(tmp, "maxvit")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(enc2), "materialize.py"),
                    os.path.join(enc2, "zoobot_tree_maxvit_tiny_rw_dr5"), out], check=True)
    return os.path.join(out, "model.ckpt")


def ckpt_effnetv2():
    _, sd, _ = materialize.state_dict(os.path.join(enc2, "tf_efficientnetv2_s"))
    g = np.random.default_rng(21)
    full = collections.OrderedDict(("encoder." + k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in sd.items())
    full["head.1.0.weight"] = torch.from_numpy((g.standard_normal((34, 1280)) * 0.03).astype(np.float32))
    full["head.1.0.bias"] = torch.from_numpy((g.standard_normal(34) * 0.1).astype(np.float32))
    path = os.path.join(tmp, "effnetv2.ckpt")
    torch.save({"state_dict": full, "hyper_parameters": {"architecture_name": "tf_efficientnetv2_s", "channels": 3,
                                                         "question_answer_pairs_size": 34}}, path)
    return path


def args_for(model, out, manifest=None, *extra):
    a = pl.run_args(sv, model, out, *extra)
    a[a.index("--size") + 1] = "224"
    a += ["--schema", "gz_decals_dr5"]
    if manifest:
        a[a.index("--manifest") + 1] = manifest
    return a


def attempt(argv, kill_after):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mctest.mpi_env(),
                         start_new_session=True, text=True)
    try:
        so, se = p.communicate(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        mctest.session_signal(p.pid, signal.SIGKILL)  # mpirun and every rank (ranks have process groups of their own)
        p.communicate()
        return "killed", ""
    return ("done" if p.returncode == 0 else "exit %d: %s" % (p.returncode, se[-800:])), so


def one_family(name, model):
    ref = os.path.join(tmp, name + "_ref.h5")
    t0 = time.time()
    mctest.mpirun(1, [mctest.MORPHCAT] + args_for(model, ref), timeout=600)
    full = time.time() - t0
    refd, attrs = pl.read_catalogue(ref)
    st = refd["galaxies/status"]
    ok = st == 1
    c.check(ok.sum() >= 14 and attrs.get("architecture", name) is not None,
            "%s: uninterrupted run, %d of %d galaxies ok, %.1f s" % (name, ok.sum(), len(st), full))

    # the head really ran on the embeddings: concentrations = 1 + 100 sigmoid(W e + b) of the stored rows
    if "embedding/features" in refd and "morphology/concentration" in refd:
        sd = torch.load(model, map_location="cpu")["state_dict"]
        w, b = sd["head.1.0.weight"].numpy().astype(np.float64), sd["head.1.0.bias"].numpy().astype(np.float64)
        e = refd["embedding/features"][ok].astype(np.float64)
        conc = 1 + 100 / (1 + np.exp(-(e @ w.T + b)))
        err = mctest.rel_max_err(refd["morphology/concentration"][ok], conc)
        c.check(err < 1e-5, "%s: stored concentrations are the Dirichlet head of the stored embeddings (%.2g)" % (name, err))
    else:
        c.check(False, "%s: catalogue has embeddings and concentrations (%s)" % (name, sorted(refd)))

    # killed at a random moment, rerun until done
    out = os.path.join(tmp, name + "_killed.h5")
    argv = ["mpirun", "-n", "2", "--oversubscribe", mctest.MORPHCAT] + args_for(model, out, None, "--commit-seconds", "0")
    kills = [rng.uniform(0.3, full * 0.9), rng.uniform(0.3, full * 0.6)]
    results = [attempt(argv, k)[0] for k in kills]
    res, _ = attempt(argv, None)
    c.check(res == "done", "%s: kills at %s s (%s), then the same command completes (%s)" % (
        name, ", ".join("%.2f" % k for k in kills), results, res))
    got, _ = pl.read_catalogue(out)
    differ = [k for k in sorted(refd) if k not in got or not pl.same_values(got[k], refd[k])]
    c.check(not differ and not (got["galaxies/status"] == 0).any(),
            "%s: every row once, none pending, all %d datasets bit-identical to the uninterrupted run%s" % (
                name, len(refd), (" (differ: %s)" % differ) if differ else ""))

    # the same command on the complete catalogue does nothing
    before = open(out, "rb").read()
    res, so = attempt(argv, None)
    c.check(res == "done" and "nothing to do" in so and open(out, "rb").read() == before,
            "%s: rerunning the finished command does nothing and leaves the file unchanged" % name)

    # data-release rerun: two galaxies added (copies of existing files), nothing else changed
    lines = open(os.path.join(sv, "manifest.csv")).read().splitlines()
    okids = [s.decode() for s, o in zip(refd["galaxies/id_str"], ok) if o]
    path_of = {ln.split(",")[0]: ln.split(",")[1] for ln in lines[1:]}
    added = ["dr2_%s_%d" % (name, k) for k in range(2)]
    body = lines[1:] + [",".join([gid, path_of[okids[k]], "", ""]) for k, gid in enumerate(added)]
    man2 = os.path.join(sv, name + "_dr2.csv")  # file_loc paths are relative to the manifest
    open(man2, "w").write("\n".join([lines[0]] + body) + "\n")
    dr2 = os.path.join(tmp, name + "_dr2.h5")
    rr = ["rerun", "--previous", ref, "--release", "DR2"] + args_for(model, dr2, man2)[1:]
    mctest.mpirun(1, [mctest.MORPHCAT] + rr, timeout=600)
    g2, _ = pl.read_catalogue(dr2)
    ids = [s.decode() for s in g2["galaxies/id_str"]]
    rel = [s.decode() for s in g2["galaxies/release"]]
    redo = [i for i, r in zip(ids, rel) if r == "DR2"]
    old_ids = [s.decode() for s in refd["galaxies/id_str"]]
    bad_rows = [i for i, v in zip(old_ids, st) if v == 6]  # unusable manifest rows are always retried
    c.check(ids == old_ids + added and redo == bad_rows + added,
            "%s: the rerun computed exactly the two added galaxies (and the %d unusable manifest rows) under DR2 "
            "(%s)" % (name, len(bad_rows), redo))
    n_old = len(old_ids)
    keep = [j for j, i in enumerate(old_ids) if i not in bad_rows]
    carried = all(pl.same_values(g2[k][keep], refd[k][keep]) for k in refd)
    c.check(carried, "%s: every other row is carried bit for bit, in every dataset" % name)
    okrows = np.flatnonzero(ok)
    err = max(mctest.rel_max_err(g2["embedding/features"][n_old + k], refd["embedding/features"][okrows[k]])
              for k in range(2))
    c.check(err < 1e-4, "%s: an added copy of a galaxy's file gets that galaxy's embedding (rel max err %.2g)" % (name, err))


one_family("maxvit_tiny_rw_224", ckpt_maxvit())
one_family("tf_efficientnetv2_s", ckpt_effnetv2())
if not c.failed:
    shutil.rmtree(tmp, ignore_errors=True)
c.finish()
