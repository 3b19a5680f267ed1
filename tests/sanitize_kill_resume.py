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
out = os.path.join(d, "cat.h5")


def launch(output):
    """The job on output, started in a session of its own, once it holds its lock (start-up under ASan varies
    with the load, so kill moments are timed from the lock); returns the process and that moment."""
    argv = ["mpirun", "-n", "2", "--oversubscribe", mctest.MORPHCAT] + pl.run_args(sv, model, output,
                                                                                 "--commit-seconds", "0")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mctest.mpi_env(),
                         start_new_session=True, text=True)
    t = time.time()
    while not os.path.exists(output + ".lock") and p.poll() is None and time.time() - t < 120:
        time.sleep(0.02)
    return p, time.time()


p, t_lock = launch(ref)
so, se = p.communicate(timeout=900)
busy = time.time() - t_lock  # the reference's time holding its lock: creation, computing, closing
c.check(p.returncode == 0, "the uninterrupted run ends with exit 0 (%d): %s" % (p.returncode, se[-500:]))
kills, frac, tries = 0, 0.4, 0
while kills < 2 and tries < 10:  # two kills at random moments of the job; a run that ends first is no kill
    tries += 1
    p, t_lock = launch(out)
    try:
        so, se = p.communicate(timeout=rng.uniform(0.1, frac) * busy)
        c.check(p.returncode == 0, "a run ends with exit 0 (%d): %s" % (p.returncode, se[-500:]))
        if kills:
            break  # complete after a kill and resume: the last run below finds nothing to do
        for f in (out, out + ".lock"):  # it finished before its kill: start afresh, killing earlier
            if os.path.exists(f):
                os.remove(f)
        frac /= 2
    except subprocess.TimeoutExpired:
        mctest.session_signal(p.pid, signal.SIGKILL)
        p.communicate()
        kills += 1
p, _ = launch(out)
so, se = p.communicate(timeout=900)
c.check(p.returncode == 0, "the last run ends with exit 0 (%d): %s" % (p.returncode, se[-500:]))
got, _ = pl.read_catalogue(out)
refd, _ = pl.read_catalogue(ref)
c.check(kills >= 1, "killed %d time(s) before the last run (%d tries)" % (kills, tries))
c.check(all(pl.same_values(got[k], refd[k]) for k in refd), "after the kills, the catalogue equals the uninterrupted run")
c.finish()
