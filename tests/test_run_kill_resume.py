"""Kill the catalogue job with SIGKILL (the whole process group: mpirun and every rank, as a node failure or
`kill -9` would) at random moments, many times, rerunning the same command after each kill, then let it finish:
the catalogue must hold every manifest row exactly once, with values bit-identical to an uninterrupted run.
Kills land everywhere: during MPI start-up, catalogue creation, computing, writing and committing."""
import os
import random
import signal
import subprocess
import time

import numpy as np

import mctest
import pipeline_lib as pl

c = mctest.Checks()
rng = random.Random(20261124)
sv = pl.survey(n=150, size=64, seed=8, broken=11)
model = pl.model()

ref = os.path.join(mctest.tmpdir(), "ref.h5")
t0 = time.time()
mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, ref, "--commit-seconds", "0"), timeout=600)
full = time.time() - t0
refd, _ = pl.read_catalogue(ref)
print("uninterrupted 2-rank run: %.1f s" % full)



def attempt(args, kill_after):
    """One run of the command; SIGKILL its whole process group after kill_after s (None: let it finish).
    Returns 'killed', 'done' or an error text."""
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mctest.mpi_env(),
                         start_new_session=True)
    try:
        so, se = p.communicate(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        mctest.session_signal(p.pid, signal.SIGKILL)  # mpirun and every rank
        p.communicate()
        return "killed" if kill_after is not None else "hung"
    if p.returncode != 0:
        return "exit %d: %s" % (p.returncode, se.decode()[-1500:])
    return "done"


total_kills = 0


def trials():
    """12 trials of 2 ranks and 6 of 1, then more of 2 ranks until at least 16 kills landed: a kill whose moment
    comes after the run already finished (a loaded machine runs faster or slower than the reference) is no kill,
    and the count must not depend on the machine's speed (extra trials kill early, at most 188 of them)."""
    for t in range(12):
        yield 2, t
    for t in range(6):
        yield 1, t
    for t in range(12, 200):
        if total_kills >= 16:
            return
        yield 2, t


for ranks, t in trials():
    out = os.path.join(mctest.tmpdir(), "cat.h5")
    args = ["mpirun", "-n", str(ranks), "--oversubscribe", mctest.MORPHCAT] + pl.run_args(
        sv, model, out, "--commit-seconds", str(rng.choice([0, 0, 0.2])))
    # one kill anywhere in the run (start-up, creation, computing, committing, closing), and in half the
    # trials a second kill while the resumed run is under way
    # extra trials (t >= 12) kill within the first half of the reference duration, so they land however fast the
    # machine has become since the reference run
    kills = [rng.uniform(0.02, full * (1.05 if t < 12 else 0.5))]
    if t % 2:
        kills.append(rng.uniform(0.02, full * 0.8))
    result = None
    for k in kills + [None]:
        result = attempt(args, k)
        if result == "killed":
            total_kills += 1
        elif result != "done":
            break
    c.check(result == "done", "%d rank(s), trial %d: kills at %s s, then the same command completes (%s)" % (
        ranks, t, ", ".join("%.2f" % k for k in kills), result))
    if result != "done":
        continue
    got, attrs = pl.read_catalogue(out)
    ids = got["galaxies/id_str"]
    same = [k for k in sorted(refd) if not pl.same_values(got[k], refd[k])]
    c.check(np.array_equal(ids, refd["galaxies/id_str"]) and len(set(ids)) == len(ids)
            and not (got["galaxies/status"] == 0).any() and not same,
            "%d rank(s), trial %d: every row exactly once, none pending, all %d datasets bit-identical to the "
            "uninterrupted run%s" % (ranks, t, len(refd), (" (differ: %s)" % same) if same else ""))
print("%d kills in all" % total_kills)
c.check(total_kills >= 16, "at least 16 kills happened (%d)" % total_kills)
c.finish()
