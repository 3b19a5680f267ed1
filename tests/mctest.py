"""tests/mctest.py: shared helpers for morphcat's Python tests (run by tests/run.sh with Debian's python3).

A test exits 0 to pass, 77 to skip (its last printed line says why) and anything else to fail.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.environ.get("MC_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MORPHCAT = os.environ.get("MORPHCAT") or os.path.join(ROOT, "morphcat")
SHARED = os.environ.get("MC_SHARED") or os.path.join(ROOT, "..", "shared")
sys.path.insert(0, os.path.join(ROOT, "tools"))


def skip(reason):
    print("skipped: " + reason)
    sys.exit(77)


def shared_path(*parts):
    """A path under ../shared, or skip the test (saying so) when ../shared is absent."""
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        skip("%s is absent (../shared is not beside this clone)" % p)
    return p


def run(args, check=True, **kw):
    """Run morphcat with args; returns CompletedProcess with text stdout/stderr."""
    cp = subprocess.run([MORPHCAT] + list(args), capture_output=True, text=True, **kw)
    if check and cp.returncode != 0:
        print("command failed:", " ".join([MORPHCAT] + list(args)))
        print(cp.stdout)
        print(cp.stderr)
        raise SystemExit(1)
    return cp


_shm_dir = None


def shm_dir():
    """This test's folder for Open MPI's shared-memory segments (in /dev/shm where it is writable), removed when
    the test exits: ranks the kill and resume tests SIGKILL never unlink their segments, and left in /dev/shm
    itself they pile up (hundreds after a few make checks)."""
    global _shm_dir
    if _shm_dir is None:
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        _shm_dir = tempfile.mkdtemp(prefix="mctest-shm-", dir=base)
        atexit.register(shutil.rmtree, _shm_dir, True)
    return _shm_dir


def mpi_env():
    """Environment for mpirun in tests: root is allowed (CI runs as root), more ranks than cores too, and shared
    memory segments in the test's own folder (shm_dir)."""
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none", OMPI_MCA_btl_vader_backing_directory=shm_dir(),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return env


def mpirun(n, argv, check=True, timeout=None, **kw):
    """Run argv (a full command, e.g. [MORPHCAT, 'run', ...]) on n MPI ranks; CompletedProcess with text output."""
    cmd = ["mpirun", "-n", str(n), "--oversubscribe"] + list(argv)
    cp = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), timeout=timeout, **kw)
    if check and cp.returncode != 0:
        print("command failed:", " ".join(cmd))
        print(cp.stdout)
        print(cp.stderr)
        raise SystemExit(1)
    return cp


def session_signal(sid, sig):
    """Signal every process of session sid (a Popen started with start_new_session=True has sid == its pid).
    mpirun puts its ranks in process groups of their own, so os.killpg(mpirun) alone leaves the ranks running
    for a while; a node failure or `scancel -s KILL` kills them all at once, as this does."""
    for _ in range(2):  # a second pass catches a rank forked while the first was under way
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid:
                    os.kill(int(p), sig)
            except (OSError, IndexError, ValueError):
                pass


def rel_max_err(ours, ref):
    import numpy as np
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def tmpdir():
    """A fresh directory, removed when the test exits (MC_KEEP_TMP=1 keeps it for a look after a failure).
    The detector tests' directories hold ~500 MB of weights each: left behind, 1400 of them filled a disk."""
    d = tempfile.mkdtemp(prefix="mctest-")
    if not os.environ.get("MC_KEEP_TMP"):
        atexit.register(shutil.rmtree, d, True)
    return d


class Checks:
    """Collects named checks so one test reports every failure, then exits nonzero if any failed."""

    def __init__(self):
        self.failed = 0
        self.n = 0

    def check(self, ok, what):
        self.n += 1
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            self.failed += 1
        return ok

    def finish(self):
        print("%d checks, %d failed" % (self.n, self.failed))
        sys.exit(1 if self.failed else 0)


def vote_fractions(conc, questions):
    """Dirichlet concentrations (rows, answers) to expected vote fractions: each question's block over its sum."""
    import numpy as np

    out = np.empty_like(conc, dtype=np.float64)
    i = 0
    for q in questions:
        n = len(q["answers"])
        block = conc[:, i : i + n].astype(np.float64)
        out[:, i : i + n] = block / block.sum(axis=1, keepdims=True)
        i += n
    assert i == conc.shape[1]
    return out


def check_bf16_rule(c, name, ours, ref, questions, source, floor=0.005):
    """The speed issue's bf16 accuracy rule on Dirichlet concentrations: ours and ref are {"fp32": .., "bf16": ..}
    (morphcat, PyTorch). morphcat fp32 within 1e-4 relative of PyTorch fp32, and max |fraction_bf16 - fraction_fp32|
    of morphcat <= max(floor, half of PyTorch bf16's own error). Prints the figure line."""
    import numpy as np

    err32 = rel_max_err(ours["fp32"], ref["fp32"])
    c.check(err32 <= 1e-4, "%s fp32 concentrations vs PyTorch fp32: rel max err %.2g <= 1e-4" % (name, err32))
    f = {k: vote_fractions(v, questions) for k, v in ours.items()}
    t = {k: vote_fractions(v, questions) for k, v in ref.items()}
    mine = float(np.abs(f["bf16"] - f["fp32"]).max())
    theirs = float(np.abs(t["bf16"] - t["fp32"]).max())
    bound = max(floor, theirs / 2)
    c.check(mine <= bound, "%s bf16 vote fractions: max |bf16 - fp32| %.4f <= %.4f (= max(%.3f, PyTorch bf16's "
                           "own %.4f / 2))" % (name, mine, bound, floor, theirs))
    print("figure: %s vote-fraction error bf16 vs fp32: morphcat %.5f, PyTorch %.5f (%s)" % (name, mine, theirs, source))
