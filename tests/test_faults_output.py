"""Faults on the catalogue's side while a job runs: the disk fills up (a small tmpfs the test mounts and unmounts),
the catalogue is deleted, the catalogue is replaced by another file. Each time the job stops with one line naming
the file and a nonzero exit, never writes into a file other than the one it opened, keeps what it committed, and
after the fault is undone the same command completes to a catalogue equal to an uninterrupted run."""
import hashlib
import os
import shutil
import subprocess
import time

import numpy as np

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey(n=500, size=64, seed=21, broken=11)
model = pl.model()
d = mctest.tmpdir()
ref = os.path.join(d, "ref.h5")
mctest.run(pl.run_args(sv, model, ref, "--commit-seconds", "1"))
refd, _ = pl.read_catalogue(ref)


def same_as_ref(path):
    got, _ = pl.read_catalogue(path)
    return sorted(got) == sorted(refd) and all(pl.same_values(got[k], refd[k]) for k in refd)


def committed_rows_match_ref(path):
    """Rows with a status (committed) hold exactly the uninterrupted run's values; returns (n committed, ok)."""
    got, _ = pl.read_catalogue(path)
    done = got["galaxies/status"] != 0
    ok = all(pl.same_values(got[k][done], refd[k][done]) for k in refd)
    return int(done.sum()), ok


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def morphcat_lines(text):
    return [l for l in text.splitlines() if l.startswith("morphcat:") and ": rank 0: " in l and "_file:" not in l
            and "bad_" not in l]


def start(out):
    return subprocess.Popen([mctest.MORPHCAT] + pl.run_args(sv, model, out, "--commit-seconds", "0.3"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_rows(out, n, p):
    """Until the catalogue has n committed rows (or the job ended)."""
    import h5py
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        try:
            with h5py.File(out, "r") as f:
                if (f["galaxies/status"][:] != 0).sum() >= n:
                    return True
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    return False


# ---- the catalogue deleted under the job ----
out = os.path.join(d, "deleted.h5")
p = start(out)
running = wait_rows(out, 100, p)
os.unlink(out)
so, se = p.communicate(timeout=300)
lines = morphcat_lines(se)
c.check(running and p.returncode == 1, "deleted catalogue: the job stops with exit 1 (running when deleted: %s, exit %s)"
        % (running, p.returncode))
c.check(any("deleted.h5: the catalogue was deleted while the job ran: stopping" in l for l in lines),
        "deleted catalogue: one line says so, naming the file: %r" % lines)
c.check(not os.path.exists(out), "deleted catalogue: the job did not create a new file at the path")
r = mctest.run(pl.run_args(sv, model, out, "--commit-seconds", "1"), check=False)
c.check(r.returncode == 0 and same_as_ref(out), "deleted catalogue: the same command then makes it afresh, equal to "
        "the uninterrupted run")

# ---- the catalogue replaced under the job (moved away, another file put at its path) ----
out = os.path.join(d, "replaced.h5")
p = start(out)
running = wait_rows(out, 100, p)
os.rename(out, out + ".moved")
shutil.copyfile(ref, out)  # an impostor: a valid catalogue, but not the file the job opened
before = sha(out)
so, se = p.communicate(timeout=300)
lines = morphcat_lines(se)
c.check(running and p.returncode == 1 and any("replaced.h5: the catalogue was replaced by another file while the job "
                                              "ran: stopping" in l for l in lines),
        "replaced catalogue: the job stops with exit 1 and one line naming the file (%s): %r" % (p.returncode, lines))
c.check(sha(out) == before, "replaced catalogue: the job never wrote into the file now at its path")
n_done, ok = committed_rows_match_ref(out + ".moved")
c.check(ok and n_done >= 100, "replaced catalogue: the file the job opened kept its %d committed rows intact" % n_done)
os.replace(out + ".moved", out)
r = mctest.run(pl.run_args(sv, model, out, "--commit-seconds", "1"), check=False)
c.check(r.returncode == 0 and "resuming" in r.stderr and same_as_ref(out),
        "replaced catalogue: put back, the same command resumes it to equal the uninterrupted run")

# ---- disk full mid-run: a 2 MiB tmpfs (the catalogue needs about 8 MiB of written chunks) ----
if os.geteuid() != 0:
    mctest.skip("the disk-full part needs root to mount a tmpfs (the other parts passed)")
mnt = os.path.join(d, "small")
os.mkdir(mnt)
m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt], capture_output=True, text=True)
if m.returncode != 0:
    mctest.skip("cannot mount a tmpfs here (%s); the other parts passed" % m.stderr.strip())
try:
    out = os.path.join(mnt, "full.h5")
    r = mctest.run(pl.run_args(sv, model, out, "--commit-seconds", "0"), check=False)
    lines = morphcat_lines(r.stderr)
    c.check(r.returncode == 1 and any("full.h5: writing rows" in l and "disk full" in l for l in lines),
            "disk full: exit 1 and a line naming the file and the likely cause (%d): %r" % (r.returncode, lines))
    n_done, ok = committed_rows_match_ref(out)
    c.check(ok and 0 < n_done < 500, "disk full: the %d committed rows are intact, bit-identical to the uninterrupted "
            "run" % n_done)
    st = mctest.run(["status", out])
    c.check("incomplete" in st.stdout and "lock:" not in st.stdout, "disk full: status says incomplete, not held")
    subprocess.run(["mount", "-o", "remount,size=64m", mnt], check=True)  # space returns
    r = mctest.run(pl.run_args(sv, model, out, "--commit-seconds", "0"), check=False)
    c.check(r.returncode == 0 and ("resuming %s: %d of 500 galaxies already done" % (out, n_done)) in r.stderr
            and same_as_ref(out), "disk full: once space returns the same command resumes (from %d rows) to a "
            "catalogue equal to the uninterrupted run (%d) %s" % (n_done, r.returncode, r.stderr[-300:]))
finally:
    subprocess.run(["umount", mnt])
    os.rmdir(mnt)
shutil.rmtree(d, ignore_errors=True)
c.finish()
