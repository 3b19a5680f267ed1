"""A small catalogue job for the sanitizer run (tests/test_sanitizers.sh; not a test by itself): 2 ranks, killed with
SIGKILL (every rank) twice at random moments, resumed each time, then compared with an uninterrupted run, so the
kill, lock-breaking, reopen and resume paths all run under AddressSanitizer and UBSan."""
import os
import random
import signal
import subprocess
import time

import mctest
import pipeline_lib as pl

c = mctest.Checks()
rng = random.Random(1414)
sv = pl.survey(n=80, size=64, seed=9, broken=11)
model = pl.model()
d = mctest.tmpdir()
ref = os.path.join(d, "ref.h5")
t0 = time.time()
mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, ref, "--commit-seconds", "0"), timeout=900)
full = time.time() - t0
out = os.path.join(d, "cat.h5")
args = ["mpirun", "-n", "2", "--oversubscribe", mctest.MORPHCAT] + pl.run_args(sv, model, out, "--commit-seconds", "0")
kills = 0
for k in [rng.uniform(0.1, 0.4) * full, rng.uniform(0.1, 0.4) * full, None]:
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mctest.mpi_env(),
                         start_new_session=True, text=True)
    # the kill is timed from the moment the job holds its lock (start-up under ASan varies with the load)
    t_lock = time.time()
    while k is not None and not os.path.exists(out + ".lock") and p.poll() is None and time.time() - t_lock < 120:
        time.sleep(0.02)
    try:
        so, se = p.communicate(timeout=k if k is not None else 900)
        c.check(p.returncode == 0, "the run ends with exit 0 (%d): %s" % (p.returncode, se[-500:]))
    except subprocess.TimeoutExpired:
        mctest.session_signal(p.pid, signal.SIGKILL)
        p.communicate()
        kills += 1
got, _ = pl.read_catalogue(out)
refd, _ = pl.read_catalogue(ref)
c.check(kills >= 1, "killed %d time(s) before the last run" % kills)
c.check(all(pl.same_values(got[k], refd[k]) for k in refd), "after the kills, the catalogue equals the uninterrupted run")
c.finish()
