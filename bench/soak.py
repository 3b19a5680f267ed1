"""bench/soak.py (make soak): the kill campaign. One catalogue job (2 ranks) is killed with SIGKILL N times (default
100) at random moments, alternately one rank alone (mpirun then ends the job) and the whole job (mpirun and every
rank, as a node failure would), and rerun after every kill until it completes. Then it reports kills survived, rows
lost (rows an uninterrupted run finishes that the final catalogue does not), rows duplicated (ids present more than
once) and whether every dataset equals an uninterrupted run bit for bit. Timings are on whatever load the machine
has. Environment: SOAK_KILLS (100), SOAK_ROWS (16000), SOAK_SEED (14)."""
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import mctest  # noqa: E402
import pipeline_lib as pl  # noqa: E402

kills_wanted = int(os.environ.get("SOAK_KILLS", "100"))
rows = int(os.environ.get("SOAK_ROWS", "16000"))
rng = random.Random(int(os.environ.get("SOAK_SEED", "14")))
sv = pl.survey(n=rows, size=64, seed=14, broken=24)
model = pl.model()
d = mctest.tmpdir()
ref = os.path.join(d, "ref.h5")
t0 = time.time()
mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, ref, "--commit-seconds", "0.5"), timeout=3600)
full = time.time() - t0
print("uninterrupted 2-rank run: %d rows in %.1f s" % (rows, full), flush=True)
out = os.path.join(d, "soak.h5")
args = ["mpirun", "-n", "2", "--oversubscribe", mctest.MORPHCAT] + pl.run_args(sv, model, out, "--commit-seconds",
                                                                            "0.5")


def session_pids(sid, want_rank):
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if int(fields[3]) == sid and cmd and os.path.basename(cmd[0]) == b"morphcat" and want_rank:
            pids.append(int(p))
    return pids


kills = {"one rank": 0, "whole job": 0}
attempts = failures = 0
t_start = time.time()
while True:
    attempts += 1
    n_kills = sum(kills.values())
    k = rng.uniform(0.05, 2.5) if n_kills < kills_wanted else None
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mctest.mpi_env(),
                         start_new_session=True, text=True)
    try:
        so, se = p.communicate(timeout=k if k is not None else 3600)
        if p.returncode == 0:
            if "complete" in so and k is None:
                break
            if k is not None:  # finished before the kill landed: the campaign needs a longer job
                print("the job completed before kill %d landed; raise SOAK_ROWS" % (n_kills + 1))
                break
        else:
            failures += 1
            print("attempt %d: exit %d: %s" % (attempts, p.returncode, [l for l in se.splitlines() if l.startswith("morphcat:") and "_file:" not in l and "bad_" not in l][-2:]), flush=True)
            if failures > 5:
                break
    except subprocess.TimeoutExpired:
        how = "one rank" if n_kills % 2 == 0 else "whole job"
        ranks = session_pids(p.pid, True)
        if how == "one rank" and ranks:
            os.kill(rng.choice(ranks), signal.SIGKILL)
            try:
                p.communicate(timeout=60)  # mpirun notices and ends the job
            except subprocess.TimeoutExpired:
                pass
        else:
            how = "whole job"
        mctest.session_signal(p.pid, signal.SIGKILL)
        p.communicate()
        kills[how] += 1
        if sum(kills.values()) % 10 == 0:
            print("%d kills (%d one rank, %d whole job) after %.0f s" % (sum(kills.values()), kills["one rank"],
                                                                     kills["whole job"], time.time() - t_start),
                  flush=True)
got, _ = pl.read_catalogue(out)
refd, _ = pl.read_catalogue(ref)
ids = list(got["galaxies/id_str"])
lost = int(((refd["galaxies/status"] != 0) & (got["galaxies/status"] == 0)).sum())
dup = len(ids) - len(set(ids))
differ = [k for k in sorted(refd) if not pl.same_values(got[k], refd[k])]
print("kill campaign: %d kills survived (%d of one rank, %d of the whole job) in %d runs, %.0f s; %d failed runs" % (
    sum(kills.values()), kills["one rank"], kills["whole job"], attempts, time.time() - t_start, failures))
print("rows: %d in the catalogue, %d lost, %d duplicated; final catalogue %s the uninterrupted run (%d datasets)%s" % (
    len(ids), lost, dup, "equals" if not differ else "DIFFERS from", len(refd),
    (": " + ", ".join(differ)) if differ else ""))
ok = sum(kills.values()) >= kills_wanted and lost == 0 and dup == 0 and not differ and failures == 0
sys.exit(0 if ok else 1)
