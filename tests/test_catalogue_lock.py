"""One job per catalogue: a second `morphcat run` (or merge, or rerun) on an output another job holds is refused at
once with one line naming the holder, exit 1, nothing changed; a lock left by a job killed with SIGKILL (holder gone
on this host) or by another host whose heartbeat stopped is broken, the breaker says so, and the resumed catalogue
equals an uninterrupted run; `morphcat status` shows the holder. All ranks of one job share its lock."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey(n=900, size=64, seed=21, broken=11)
model = pl.model()
d = mctest.tmpdir()
ref = os.path.join(d, "ref.h5")
mctest.run(pl.run_args(sv, model, ref, "--commit-seconds", "0"))
refd, _ = pl.read_catalogue(ref)
c.check(not os.path.exists(ref + ".lock"), "a finished job leaves no lock file")


def same_as_ref(path):
    got, _ = pl.read_catalogue(path)
    return sorted(got) == sorted(refd) and all(pl.same_values(got[k], refd[k]) for k in refd)


def heartbeat(path):
    with open(path + ".lock") as f:
        for line in f:
            if line.startswith("heartbeat="):
                return float(line.split("=", 1)[1])
    return None


def fake_lock(out, host, age, command="run"):
    """A lock in the format morphcat writes, as a job on another host whose last heartbeat was age s ago."""
    with open(out + ".lock", "w") as f:
        f.write("command=%s\nhost=%s\npid=4242\npid_start=1\nslurm_job=777\nstarted_utc=2026-12-01T00:00:00Z\n"
                "heartbeat=%20.3f\n" % (command, host, time.time() - age))


# ---- a running 2-rank job holds the lock; a second job is refused at once ----
out = os.path.join(d, "cat.h5")
args = ["mpirun", "-n", "2", "--oversubscribe", mctest.MORPHCAT] + pl.run_args(
    sv, model, out, "--commit-seconds", "0", "--lock-stale-after", "1")
a = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mctest.mpi_env(), start_new_session=True)
t0 = time.time()
while not os.path.exists(out + ".lock") and time.time() - t0 < 60 and a.poll() is None:
    time.sleep(0.02)
c.check(os.path.exists(out + ".lock"), "the running job created %s.lock" % out)
hb0 = heartbeat(out)
time.sleep(0.8)
hb1 = heartbeat(out)
c.check(hb0 is not None and hb1 is not None and hb1 > hb0,
        "rank 0 refreshes the heartbeat while the job runs (%s then %s)" % (hb0, hb1))
mctest.session_signal(a.pid, signal.SIGSTOP)  # the holder is alive but makes no progress: the second job must not wait for it
size_before = os.path.getsize(out) if os.path.exists(out) else -1
mtime_before = os.stat(out).st_mtime_ns if os.path.exists(out) else -1
t1 = time.time()
b = mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, out, "--commit-seconds", "0"), check=False, timeout=120)
took = time.time() - t1
lines = [l for l in b.stderr.splitlines() if l.startswith("morphcat")]  # mpirun adds its own paragraph
holder_pid = None
with open(out + ".lock") as f:
    for line in f:
        if line.startswith("pid="):
            holder_pid = line.split("=", 1)[1].strip()
c.check(b.returncode == 1, "the second job exits 1 (got %d)" % b.returncode)
c.check(len(lines) == 1 and "in use by another job" in lines[0] and socket.gethostname() in lines[0]
        and ("pid %s" % holder_pid) in lines[0] and "morphcat run" in lines[0],
        "the refusal is one line naming the holder's command, host and pid: %r" % lines)
c.check(took < 30, "the refusal comes at once, before any model is loaded (%.1f s under load)" % took)
c.check((os.path.getsize(out) if os.path.exists(out) else -1) == size_before
        and (os.stat(out).st_mtime_ns if os.path.exists(out) else -1) == mtime_before,
        "the refused job did not touch the catalogue")
st = mctest.run(["status", out])
c.check(("lock: held by morphcat run on host %s, pid %s" % (socket.gethostname(), holder_pid)) in st.stdout
        and "STALE" not in st.stdout, "morphcat status shows who holds the catalogue: %r" % st.stdout)
sj = json.loads(mctest.run(["status", "--json", out]).stdout)
lk = sj["catalogues"][0]["lock"]
c.check(lk is not None and str(lk["pid"]) == holder_pid and lk["stale"] is False, "status --json gives the holder")

# ---- the holder is killed (SIGKILL, the whole job): its lock is stale and the resume breaks it ----
mctest.session_signal(a.pid, signal.SIGKILL)
mctest.session_signal(a.pid, signal.SIGCONT)
a.communicate()
c.check(os.path.exists(out + ".lock"), "a job killed with SIGKILL leaves its lock behind")
st = mctest.run(["status", out])
c.check("STALE" in st.stdout and "is gone on this host" in st.stdout, "status calls the dead holder's lock stale: %r"
        % st.stdout)
r = mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, out, "--commit-seconds", "0"), check=False, timeout=300)
c.check(r.returncode == 0 and ("broke a stale lock (process %s is gone on this host)" % holder_pid) in r.stderr,
        "the resume breaks the stale lock and says so (exit %d): %s" % (r.returncode, r.stderr[-400:]))
c.check(not os.path.exists(out + ".lock"), "the resumed job removed its lock at the end")
c.check(same_as_ref(out), "the resumed catalogue equals the uninterrupted run, every dataset bit for bit")

# ---- another host's lock: refused while its heartbeat is fresh, broken once older than --lock-stale-after ----
out2 = os.path.join(d, "other.h5")
fake_lock(out2, "node-elsewhere", 5)
r = mctest.run(pl.run_args(sv, model, out2, "--lock-stale-after", "60"), check=False)
lines = [l for l in r.stderr.splitlines() if l.startswith("morphcat")]
c.check(r.returncode == 1 and len(lines) == 1 and "host node-elsewhere, pid 4242, Slurm job 777" in lines[0]
        and not os.path.exists(out2), "a fresh lock from another host is honoured, naming host, pid and Slurm job "
        "(%d): %r" % (r.returncode, lines))
fake_lock(out2, "node-elsewhere", 120)
r = mctest.run(pl.run_args(sv, model, out2, "--lock-stale-after", "60"), check=False)
c.check(r.returncode == 0 and re.search(r"broke a stale lock \(no heartbeat from host node-elsewhere for 1[2-9]\d s "
                                        r"\(stale after 60 s\)\)", r.stderr) and same_as_ref(out2), "a silent other host's lock is broken after --lock-stale-after: %s"
        % r.stderr[-400:])

# ---- a job killed while it broke a stale lock leaves OUTPUT.lock.break: the next job clears it at once ----
out3 = os.path.join(d, "breaker.h5")
dead = subprocess.Popen(["true"])
dead.wait()  # a pid that is gone
fake_lock(out3, socket.gethostname(), 1)
with open(out3 + ".lock") as f:
    text = f.read().replace("pid=4242", "pid=%d" % dead.pid)
with open(out3 + ".lock", "w") as f:
    f.write(text)
with open(out3 + ".lock.break", "w") as f:
    f.write("%s %d\n" % (socket.gethostname(), dead.pid))
with open(out3 + ".lock.%s.%d.tmp" % (socket.gethostname(), dead.pid), "w") as f:
    f.write(text)
r = mctest.run(pl.run_args(sv, model, out3), check=False)
c.check(r.returncode == 0 and "broke a stale lock" in r.stderr and same_as_ref(out3)
        and not [n for n in os.listdir(d) if n.startswith("breaker.h5.lock")],
        "a dead breaker's .break and a dead job's temporary lock file do not block the resume and are cleared (%d): %s"
        % (r.returncode, [n for n in os.listdir(d) if n.startswith("breaker.h5.lock")]))

# ---- merge and rerun outputs have the same protection ----
rel = os.path.join(d, "release.h5")
fake_lock(rel, "node-elsewhere", 1, command="merge")
r = mctest.run(["merge", "--output", rel, ref], check=False)
c.check(r.returncode == 1 and "in use by another job (morphcat merge on host node-elsewhere" in r.stderr
        and not os.path.exists(rel), "merge into a held output is refused and writes nothing: %r" % r.stderr)
os.unlink(rel + ".lock")
r = mctest.run(["merge", "--output", rel, ref], check=False)
c.check(r.returncode == 0 and os.path.exists(rel) and not os.path.exists(rel + ".lock"),
        "merge takes and releases the lock when the output is free (%d) %s" % (r.returncode, r.stderr[-300:]))
new = os.path.join(d, "new.h5")
fake_lock(new, "node-elsewhere", 1, command="rerun")
r = mctest.mpirun(1, [mctest.MORPHCAT, "rerun", "--previous", ref, "--manifest", os.path.join(sv, "manifest.csv"),
                      "--release", "dr2", "--output", new, "--model", model, "--size", "64", "--batch", "4",
                      "--recipe", "gz_decals"], check=False, timeout=300)
c.check(r.returncode == 1 and "rerun: " in r.stderr and "in use by another job (morphcat rerun on host node-elsewhere"
        in r.stderr and not os.path.exists(new) and not os.path.exists(new + ".rerun"),
        "rerun into a held output is refused and creates nothing: %r" % r.stderr)
c.finish()
