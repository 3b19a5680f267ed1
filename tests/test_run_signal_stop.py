"""A stop signal (what Slurm sends before the time limit or on preemption) makes `morphcat run` finish its batch,
commit it and exit 4 without hanging: SIGUSR1 to mpirun (it passes it to every rank), and SIGTERM to one rank
alone (rank 0, which hands out the work, or a worker). Rerunning the command then completes the catalogue, every
row once, bit-identical to an uninterrupted run."""
import json
import os
import signal
import subprocess
import time

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey(n=240, size=64, seed=12, broken=11)
model = pl.model()
d = mctest.tmpdir()


def args_for(out):
    a = pl.run_args(sv, model, out, "--commit-seconds", "0.5")
    a[a.index("--size") + 1] = "160"  # a few seconds of work, so the signal lands mid-job
    return ["mpirun", "-n", "2", "--oversubscribe", mctest.MORPHCAT] + a


ref = os.path.join(d, "ref.h5")
subprocess.run(args_for(ref), env=mctest.mpi_env(), capture_output=True, timeout=600, check=True)
refd, _ = pl.read_catalogue(ref)


def done_rows(path):
    if not os.path.exists(path) or os.path.exists(path + ".creating"):
        return 0
    cp = mctest.run(["status", "--json", path], check=False)
    return json.loads(cp.stdout)["total"]["done"] if cp.returncode == 0 else 0


def rank_pids(out):
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmd = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"morphcat") and out.encode() in cmd:
                pids.append(int(p))
    return pids


for how in ("SIGUSR1 to mpirun", "SIGTERM to rank 0 only", "SIGTERM to rank 1 only"):
    out = os.path.join(d, how.split()[0] + how.split()[-2] + ".h5")
    p = subprocess.Popen(args_for(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mctest.mpi_env(),
                         text=True)
    t0 = time.time()
    while done_rows(out) < 20 and p.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    if how.startswith("SIGUSR1"):
        p.send_signal(signal.SIGUSR1)
    else:
        pids = sorted(rank_pids(out))  # launched in rank order
        os.kill(pids[0 if "rank 0" in how else 1], signal.SIGTERM)
    try:
        so, se = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        so, se = p.communicate()
        c.check(False, "%s: the job hung after the signal" % how)
        continue
    partial = done_rows(out)
    c.check(p.returncode == 4 and "finishing the current batch" in se and 0 < partial < 240,
            "%s: exit 4 after committing %d of 240 rows (exit %d)" % (how, partial, p.returncode))
    if p.returncode != 4:
        print(se[-2000:])
    cp = subprocess.run(args_for(out), env=mctest.mpi_env(), capture_output=True, text=True, timeout=600)
    got, _ = pl.read_catalogue(out)
    differ = [k for k in refd if not pl.same_values(got[k], refd[k])]
    c.check(cp.returncode == 0 and "resuming" in cp.stderr and not differ and not (got["galaxies/status"] == 0).any(),
            "%s: the same command resumes and completes; every dataset bit-identical to an uninterrupted run%s"
            % (how, " (differ: %s)" % differ if differ else ""))
c.finish()
