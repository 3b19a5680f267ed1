"""The shipped Slurm scripts on a real Slurm: this test starts munged, slurmctld and slurmd on localhost (2 CPUs,
everything in a temporary folder, slurm/local-cluster.sh) and stops them afterwards, even on failure.
1. slurm/morphcat-run.sbatch, one job of 2 ranks launched by `srun --mpi=pmix`: mid-job the batch shell gets USR1
   (what --signal=B:USR1@T sends before the time limit); the ranks finish their batch, commit, exit 4, the script
   requeues the job, and the requeued job completes the catalogue, bit-identical to an uninterrupted run.
2. slurm/submit.sh on a `morphcat plan` of 3 chunks: an array (mpirun launcher) plus the merge chained with
   afterok. One running task is requeued by force (`scontrol requeue`, as preemption does), another gets USR1;
   both come back, the merge runs once all succeeded, and the release catalogue holds every galaxy exactly once,
   equal to an uninterrupted run. Slurm delays a requeued job by two minutes (BeginTime); the test releases it
   at once with `scontrol update StartTime=now`."""
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import mctest
import pipeline_lib as pl

c = mctest.Checks()
ROOT = mctest.ROOT
for b in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "srun"):
    if not (shutil.which(b) or os.path.exists("/usr/sbin/" + b)):
        print("FAIL: %s is not installed: tools/install-deps.sh installs slurm-wlm and munge" % b)
        sys.exit(1)

cluster = mctest.tmpdir()
env = mctest.mpi_env()
env["SLURM_CONF"] = os.path.join(cluster, "slurm.conf")
env["PATH"] = env.get("PATH", "") + ":/usr/sbin"


def stop_cluster():
    subprocess.run(["sh", os.path.join(ROOT, "slurm", "local-cluster.sh"), "stop", cluster], env=env)


atexit.register(stop_cluster)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))  # so atexit runs when the test is stopped
cp = subprocess.run(["sh", os.path.join(ROOT, "slurm", "local-cluster.sh"), "start", cluster, "2"], env=env,
                    capture_output=True, text=True, timeout=120)
print(cp.stdout, cp.stderr)
if cp.returncode != 0:
    print("FAIL: the local Slurm cluster did not start (exit %d); logs in %s/log" % (cp.returncode, cluster))
    sys.exit(1)


def sh(*args, check=True):
    cp = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60)
    if check and cp.returncode != 0:
        print("command failed:", " ".join(args), cp.stdout, cp.stderr)
        raise SystemExit(1)
    return cp.stdout


def job_field(jid, field):
    out = sh("scontrol", "-o", "show", "job", str(jid), check=False)
    m = re.search(r"\b%s=(\S*)" % field, out)
    return m.group(1) if m else ""


held_since = {}


def release_begin_time():
    """Requeued jobs wait two minutes (Reason=BeginTime): let them start after 3 s (time for the requeued run's
    step to be cleaned up, which the two minutes give on a real cluster)."""
    now = time.time()
    for ln in sh("squeue", "-h", "-o", "%i %T %r", check=False).splitlines():
        f = ln.split()
        if len(f) == 3 and f[1] == "PENDING" and f[2] == "BeginTime":
            if now - held_since.setdefault(f[0], now) >= 3:
                sh("scontrol", "update", "JobId=" + f[0], "StartTime=now", check=False)
                del held_since[f[0]]


def done_rows(path):
    if not os.path.exists(path) or os.path.exists(path + ".creating"):
        return 0
    cp = mctest.run(["status", "--json", path], check=False)
    return json.loads(cp.stdout)["total"]["done"] if cp.returncode == 0 else 0


def wait_until(cond, what, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        release_begin_time()
        if cond():
            return True
        time.sleep(0.1)
    print("timed out waiting for", what)
    print(sh("squeue", check=False))
    return False


sv = pl.survey(n=300, size=64, seed=21, broken=11)
model = pl.model()
d = mctest.tmpdir()
opts = "--recipe gz_decals --size 160 --progress-seconds 1000 --commit-seconds 0.5"
ref = os.path.join(d, "ref.h5")
mctest.mpirun(2, [mctest.MORPHCAT, "run", "--manifest", os.path.join(sv, "manifest.csv"), "--model", model, "--output",
                  ref, "--release", "DR-test", "--batch", "4"] + opts.split(), timeout=600)
refd, _ = pl.read_catalogue(ref)
env.update(MC_MORPHCAT=mctest.MORPHCAT, MC_MODEL=model, MC_RELEASE="DR-test")

# ---- 1. one job, srun + PMIx, USR1 before the "time limit", self-requeue ----
out1 = os.path.join(d, "job.h5")
log1 = os.path.join(d, "job.log")
e1 = dict(env, MC_MANIFEST=os.path.join(sv, "manifest.csv"), MC_OUT=out1, MC_LAUNCHER="srun",
          MC_RUN_OPTS=opts + " --batch 4")
jid = subprocess.run(["sbatch", "--parsable", "--ntasks-per-node=2", "--time=10:00", "--output=" + log1,
                      os.path.join(ROOT, "slurm", "morphcat-run.sbatch")], env=e1, capture_output=True, text=True,
                     check=True).stdout.strip()
print("job", jid)
started = wait_until(lambda: done_rows(out1) >= 40, "job %s to compute 40 galaxies" % jid, 120)
c.check(started, "job %s runs under Slurm and writes its catalogue" % jid)
sh("scancel", "--signal=USR1", "--batch", jid)
finished = wait_until(lambda: job_field(jid, "JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"),
                      "job %s to finish" % jid)
log = open(log1).read() if os.path.exists(log1) else ""
print(log[-3000:])
c.check(finished and job_field(jid, "JobState") == "COMPLETED" and int(job_field(jid, "Restarts") or 0) >= 1,
        "job %s: stopped by USR1, requeued, completed (state %s, restarts %s)" % (
            jid, job_field(jid, "JobState"), job_field(jid, "Restarts")))
c.check("SIGUSR1" in log and "exited 4" in log and "requeueing" in log and "resuming" in log,
        "the log shows the signal, exit 4, the requeue and the resumed run")
if os.path.exists(out1):
    got, _ = pl.read_catalogue(out1)
    differ = [k for k in refd if not pl.same_values(got[k], refd[k])]
    c.check(not differ and not (got["galaxies/status"] == 0).any(),
            "the requeued job's catalogue: every row once, bit-identical to an uninterrupted run%s" % (
                " (differ: %s)" % differ if differ else ""))

# ---- 2. a planned array (mpirun launcher) and the merge after it ----
plan = os.path.join(d, "plan")
mctest.run(["plan", "--manifest", os.path.join(sv, "manifest.csv"), "--rate", "5", "--cores-per-node", "1",
            "--nodes", "2", "--chunk-rows", "100", "--batch", "4", "--startup-seconds", "10", "--out", plan])
outs = os.path.join(d, "chunks")
release = os.path.join(d, "release.h5")
e2 = dict(env, MC_LAUNCHER="mpirun", MC_RUN_OPTS=opts)
cp = subprocess.run(["sh", os.path.join(ROOT, "slurm", "submit.sh"), plan, outs, release], env=e2,
                    capture_output=True, text=True, timeout=60)
print(cp.stdout, cp.stderr)
m = re.search(r"array job (\d+).*merge job (\d+)", cp.stdout)
c.check(cp.returncode == 0 and m is not None, "submit.sh submitted the array and the merge")
if m:
    arr, mrg = m.group(1), m.group(2)
    c.check("afterok:%s" % arr in job_field(mrg, "Dependency"), "the merge depends on the array (afterok)")
    ch0, ch1 = os.path.join(outs, "chunk_00000.h5"), os.path.join(outs, "chunk_00001.h5")
    if wait_until(lambda: done_rows(ch0) >= 16, "chunk 0 to start", 120):
        sh("scontrol", "requeue", "%s_0" % arr)  # forced, as preemption with requeue does
    if wait_until(lambda: done_rows(ch1) >= 16, "chunk 1 to start", 120):
        sh("scancel", "--signal=USR1", "--batch", "%s_1" % arr)
    finished = wait_until(lambda: job_field(mrg, "JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"),
                          "the merge job", 300)
    states = {t: (job_field("%s_%d" % (arr, t), "JobState"), job_field("%s_%d" % (arr, t), "Restarts"))
              for t in range(3)}
    for f in sorted(os.listdir(outs)):
        if f.endswith(".log"):
            print("----", f)
            print(open(os.path.join(outs, f)).read()[-1500:])
    c.check(all(s == "COMPLETED" for s, _ in states.values()) and int(states[0][1] or 0) >= 1
            and int(states[1][1] or 0) >= 1, "array tasks completed; 0 and 1 were requeued (%s)" % states)
    c.check(finished and job_field(mrg, "JobState") == "COMPLETED", "the merge ran after the array and completed (%s)"
            % job_field(mrg, "JobState"))
    if os.path.exists(release):
        got, attrs = pl.read_catalogue(release)
        ids = got["galaxies/id_str"]
        c.check(len(ids) == 300 and len(set(ids)) == 300 and list(ids) == list(refd["galaxies/id_str"])
                and not (got["galaxies/status"] == 0).any(), "release catalogue: 300 galaxies, each exactly once")
        differ = [k for k in refd if not pl.same_values(got[k], refd[k])]
        bad_msg = [i for i in range(300) if got["galaxies/message"][i] != refd["galaxies/message"][i]]
        c.check(differ in ([], ["galaxies/message"]) and all(refd["galaxies/status"][i] == 6 for i in bad_msg),
                "release catalogue equals the uninterrupted run in every dataset (a bad manifest row's message "
                "names its row in the chunk) (differ: %s)" % differ)
        st = mctest.run(["status", "--plan", plan, "--outputs", outs]).stdout
        c.check("total: 300 rows, complete" in st, "morphcat status on the plan: complete")
c.finish()
