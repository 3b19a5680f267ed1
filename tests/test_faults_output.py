"""Faults on the catalogue's side while a job runs: the disk fills up (a small tmpfs the test mounts and unmounts),
the catalogue is deleted, the catalogue is replaced by another file, the output folder is made read-only (a
read-only bind mount over it: root ignores permission bits), the file system under it goes read-only (an ext4
image on a loop device, switched read-only by ext4's own error handling). Each time the job stops with one line
naming the file and a nonzero exit, never writes into a file other than the one it opened, keeps what it
committed, and after the fault is undone the same command completes to a catalogue equal to an uninterrupted run.
A part the kernel refuses (no loop devices, no mounts) is skipped with its reason; the others still count."""
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

skipped = []  # parts the kernel refused, with the reason


def mount(*args):
    return subprocess.run(["mount"] + list(args), capture_output=True, text=True)


def fault_lines(text):
    """morphcat's own lines on stderr other than the opening one and the per-galaxy failures: the fault's."""
    return [l for l in text.splitlines() if l.startswith("morphcat:") and " galaxies from " not in l
            and not any(("rank 0: %s: " % s) in l for s in ("missing_file", "corrupt_file", "bad_shape", "bad_pixels",
                                                             "bad_manifest_row"))]


def stop(p):
    p.kill()
    p.communicate()


# ---- the output folder made read-only under the job: a read-only bind mount over it (on a tmpfs of the test's
# own), so the path refuses writes while the file system, and the catalogue the job holds open, still take them ----
if os.geteuid() != 0:
    skipped.append("the read-only, file-system and disk-full parts need root to mount")
else:
    mnt = os.path.join(d, "rofolder")
    os.mkdir(mnt)
    m = mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt)
    if m.returncode != 0:
        skipped.append("cannot mount a tmpfs here (%s)" % m.stderr.strip())
    else:
        try:
            folder = os.path.join(mnt, "out")
            os.mkdir(folder)
            out = os.path.join(folder, "ro.h5")
            p = start(out)
            running = wait_rows(out, 100, p)
            ino = os.stat(out).st_ino
            b = mount("--bind", folder, folder)
            b = b if b.returncode else mount("-o", "remount,bind,ro", folder)
            if b.returncode != 0:
                stop(p)
                skipped.append("cannot make a read-only bind mount here (%s)" % b.stderr.strip())
            else:
                so, se = p.communicate(timeout=300)
                lines = fault_lines(se)
                c.check(running and p.returncode == 1 and len(lines) == 1 and ("ro.h5: the output folder %s became "
                        "read-only while the job ran" % folder) in lines[0],
                        "read-only folder: the job stops with exit 1 (%s) and one line naming the file: %r"
                        % (p.returncode, lines))
                c.check(sorted(os.listdir(folder)) == ["ro.h5", "ro.h5.lock"] and os.stat(out).st_ino == ino,
                        "read-only folder: no other file made, the catalogue is the file it opened (%r)"
                        % os.listdir(folder))
                n_done, ok = committed_rows_match_ref(out)
                c.check(ok and n_done >= 100, "read-only folder: the %d committed rows are intact" % n_done)
                subprocess.run(["umount", folder], check=True)  # writable again
                r = mctest.run(pl.run_args(sv, model, out, "--commit-seconds", "1"), check=False)
                c.check(r.returncode == 0 and "broke a stale lock" in r.stderr
                        and ("resuming %s: %d of 500 galaxies already done" % (out, n_done)) in r.stderr
                        and same_as_ref(out), "read-only folder: writable again, the same command breaks the lock "
                        "left behind and resumes to equal the uninterrupted run (%d) %s" % (r.returncode,
                                                                                          r.stderr[-300:]))
        finally:
            subprocess.run(["umount", "-R", mnt])
            os.rmdir(mnt)

# ---- the file system under the job goes read-only, as ext4 does on an I/O error (errors=remount-ro): an ext4
# image on a loop device, switched by ext4's trigger_fs_error; writes into the open catalogue then fail too ----
if os.geteuid() == 0:
    mnt = os.path.join(d, "ext4")
    os.mkdir(mnt)
    img = os.path.join(d, "ext4.img")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    mk = subprocess.run(["mkfs.ext4", "-q", "-F", img], capture_output=True, text=True)
    m = mk if mk.returncode else mount("-o", "loop,errors=remount-ro", img, mnt)
    if m.returncode != 0:
        skipped.append("cannot mount an ext4 image on a loop device here (%s)" % m.stderr.strip())
    else:
        try:
            dev = subprocess.run(["findmnt", "-no", "SOURCE", mnt], capture_output=True, text=True).stdout.strip()
            trigger = "/sys/fs/ext4/%s/trigger_fs_error" % os.path.basename(dev)
            out = os.path.join(mnt, "fsro.h5")
            p = start(out)
            running = wait_rows(out, 100, p)
            time.sleep(0.4)  # one more commit: its fsync makes the statuses seen so far durable
            try:
                with open(trigger, "w") as f:
                    f.write("test_faults_output: the file system goes read-only\n")
            except OSError as e:
                stop(p)
                skipped.append("this kernel cannot make ext4 read-only on demand (%s: %s)" % (trigger, e))
            else:
                so, se = p.communicate(timeout=300)
                lines = fault_lines(se)
                c.check(running and p.returncode == 1 and len(lines) == 1
                        and ("fsro.h5: writing rows" in lines[0] or "fsro.h5: fsync failed" in lines[0])
                        and "read-only" in lines[0].lower(),
                        "read-only file system: the job stops with exit 1 (%s, no crash) and one line naming the "
                        "file and the reason: %r" % (p.returncode, lines))
                c.check(sorted(os.listdir(mnt)) == ["fsro.h5", "fsro.h5.lock", "lost+found"],
                        "read-only file system: no other file made (%r)" % os.listdir(mnt))
                subprocess.run(["umount", mnt], check=True)
                fsck = subprocess.run(["e2fsck", "-fy", img], capture_output=True, text=True)
                subprocess.run(["mount", "-o", "loop", img, mnt], check=True)  # the disk as it was left: writable
                n_done, ok = committed_rows_match_ref(out)
                c.check(fsck.returncode in (0, 1) and ok and n_done > 0, "read-only file system: on the disk the "
                        "%d committed rows are intact (e2fsck exit %d)" % (n_done, fsck.returncode))
                r = mctest.run(pl.run_args(sv, model, out, "--commit-seconds", "1"), check=False)
                c.check(r.returncode == 0 and "broke a stale lock" in r.stderr
                        and ("resuming %s: %d of 500 galaxies already done" % (out, n_done)) in r.stderr
                        and same_as_ref(out), "read-only file system: writable again, the same command resumes to "
                        "equal the uninterrupted run (%d) %s" % (r.returncode, r.stderr[-300:]))
        finally:
            subprocess.run(["umount", mnt], capture_output=True)
            os.rmdir(mnt)
            os.unlink(img)

# ---- disk full mid-run: a 2 MiB tmpfs (the catalogue needs about 8 MiB of written chunks) ----
mnt = os.path.join(d, "small")
os.mkdir(mnt)
m = mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt) if os.geteuid() == 0 else None
if m is not None and m.returncode != 0:
    skipped.append("cannot mount a tmpfs here (%s)" % m.stderr.strip())
elif m is not None:
    try:
        out = os.path.join(mnt, "full.h5")
        r = mctest.run(pl.run_args(sv, model, out, "--commit-seconds", "0"), check=False)
        lines = morphcat_lines(r.stderr)
        c.check(r.returncode == 1 and any("full.h5: writing rows" in l and "disk full" in l for l in lines),
                "disk full: exit 1 and a line naming the file and the likely cause (%d): %r" % (r.returncode, lines))
        n_done, ok = committed_rows_match_ref(out)
        c.check(ok and 0 < n_done < 500, "disk full: the %d committed rows are intact, bit-identical to the "
                "uninterrupted run" % n_done)
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
if skipped and not c.failed:
    print("%d checks passed" % c.n)
    mctest.skip("; ".join(skipped) + " (the other parts passed)")
c.finish()
