"""The catalogue job on two Slurm nodes: two network namespaces on this machine, each with its own hostname (UTS
namespace) and a slurmd, one slurmctld (on node a), munged as in test_slurm_requeue; the namespaces are linked by a
veth pair whose two addresses (a private /30) exist only inside them. MPI goes over TCP between them (Open MPI's tcp
btl restricted to that /30). Every namespace, link and daemon is made by this test and removed afterwards, also on
failure; no traffic can leave the namespaces (they have no other interface and no route), and nothing is sent to
any address but loopback and the two veth addresses.
Each node has 1 CPU (one rank per node: more ranks than the machine's 2 cores make every collective over TCP crawl).
1. slurm/morphcat-run.sbatch with --nodes=2 (srun + PMIx): ranks on both nodes write one
   catalogue; midway the job is preempted with requeue (`scontrol requeue`) and comes back; then the ranks of node b
   are killed with SIGKILL; the job fails; submitted again it resumes, and the catalogue holds every galaxy exactly
   once, bit-identical to a one-node run.
2. slurm/submit.sh on a plan of 4 chunks, one node per task: the tasks spread over both nodes, the merge runs after
   them, and the release catalogue holds every galaxy exactly once, equal (by id_str, every value) to the one-node
   run."""
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

ROOT = mctest.ROOT
SBIN = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
tag = "%d" % (os.getpid() % 100000)
NS = ["mcna" + tag, "mcnb" + tag]
VETH = ["mcva" + tag, "mcvb" + tag]
HOST = ["mcnode-a", "mcnode-b"]
NET = "10.213.15.0/30"  # exists only inside the two namespaces
ADDR = ["10.213.15.1", "10.213.15.2"]
cluster = mctest.tmpdir()
env = mctest.mpi_env()
env["PATH"] = SBIN
env["SLURM_CONF"] = os.path.join(cluster, "slurm.conf")
# MPI between the nodes over TCP on the veth pair only (no other interface exists in the namespaces anyway)
env.update(OMPI_MCA_btl="self,vader,tcp", OMPI_MCA_btl_tcp_if_include=NET, OMPI_MCA_oob_tcp_if_include=NET,
           PMIX_MCA_ptl_tcp_if_include=NET, OMPI_MCA_mpi_yield_when_idle="1")
made = []  # namespaces made, for the clean-up
for b in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "srun", "ip", "nsenter", "unshare"):
    if not shutil.which(b, path=SBIN):
        print("FAIL: %s is not installed: tools/install-deps.sh installs slurm-wlm, munge and iproute2" % b)
        sys.exit(1)


def ip(*args, check=True):
    cp = subprocess.run(["ip"] + list(args), capture_output=True, text=True, env=env, timeout=30)
    if check and cp.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), cp.stderr.strip()))
    return cp.stdout


def ns_pids(ns):
    try:
        return [int(p) for p in ip("netns", "pids", ns, check=False).split()]
    except (RuntimeError, ValueError):
        return []


def stop_pidfile(path):
    try:
        pid = int(open(path).read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def clean_up():
    for h in HOST:
        stop_pidfile(os.path.join(cluster, "slurmd-%s.pid" % h))
    stop_pidfile(os.path.join(cluster, "slurmctld.pid"))
    for ns in made:  # whatever this test started inside its namespaces and is still there
        for p in ns_pids(ns):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    stop_pidfile(os.path.join(cluster, "munged.pid"))
    for ns in made:
        ip("netns", "del", ns, check=False)  # deletes the veth end inside it, and so the pair
    leftover = [ns for ns in made if ns in ip("netns", "list", check=False)]
    if leftover:
        print("clean-up: namespaces left over: %s" % leftover)


atexit.register(clean_up)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))

# ---- the two hosts ----
try:
    for ns in NS:
        ip("netns", "add", ns)
        made.append(ns)
    ip("link", "add", VETH[0], "netns", NS[0], "type", "veth", "peer", "name", VETH[1], "netns", NS[1])
    for i in range(2):
        ip("-n", NS[i], "link", "set", "lo", "up")
        ip("-n", NS[i], "addr", "add", ADDR[i] + "/30", "dev", VETH[i])
        ip("-n", NS[i], "link", "set", VETH[i], "up")
    cp = subprocess.run(["nsenter", "--net=/run/netns/" + NS[0], "unshare", "--uts", "hostname"], capture_output=True,
                        text=True, env=env, timeout=30)
    if cp.returncode != 0:
        raise RuntimeError("unshare --uts: " + cp.stderr.strip())
except (RuntimeError, OSError) as e:
    if any(w in str(e) for w in ("Operation not permitted", "Permission denied", "not supported", "No such file")):
        clean_up()
        mctest.skip("the kernel refuses network or UTS namespaces here (%s)" % str(e).splitlines()[0])
    raise
c = mctest.Checks()


def in_ns(i, args):
    """args run in node i's network namespace (nsenter, not `ip netns exec`, which remounts /sys without the
    cgroup file system that slurmd wants)."""
    return ["nsenter", "--net=/run/netns/" + NS[i]] + list(args)


def sh(*args, check=True):
    """A Slurm client command, run on node a (the controller's namespace)."""
    cp = subprocess.run(in_ns(0, args), env=env, capture_output=True, text=True, timeout=60)
    if check and cp.returncode != 0:
        print("command failed:", " ".join(args), cp.stdout, cp.stderr)
        raise SystemExit(1)
    return cp.stdout


# ---- munged (root namespace, a private socket: unix sockets are not bound to a network namespace) ----
for d in ("state", "log"):
    os.makedirs(os.path.join(cluster, d), exist_ok=True)
os.chmod(cluster, 0o700)
key = os.path.join(cluster, "munge.key")
with open(key, "wb") as f:
    f.write(os.urandom(1024))
os.chmod(key, 0o400)
sock = os.path.join(cluster, "munge.sock")
subprocess.run(["munged", "--force", "--key-file=" + key, "--socket=" + sock, "--pid-file=" + cluster + "/munged.pid",
                "--log-file=" + cluster + "/log/munged.log", "--seed-file=" + cluster + "/munge.seed"], env=env,
               check=True, capture_output=True, timeout=30)
with open(env["SLURM_CONF"], "w") as f:
    f.write("""# written by tests/test_slurm_multinode.py: two nodes in two network namespaces
ClusterName=morphcat-2n
SlurmctldHost={h0}({a0})
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
SchedulerType=sched/backfill
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool-%n
TmpFS={d}/tmp-%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
NodeName={h0} NodeAddr={a0} CPUs=1 State=UNKNOWN
NodeName={h1} NodeAddr={a1} CPUs=1 State=UNKNOWN
PartitionName=test Nodes={h0},{h1} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""".format(h0=HOST[0], h1=HOST[1], a0=ADDR[0], a1=ADDR[1], sock=sock, d=cluster))
for i in range(2):
    # each node its own spool and TmpFS (where PMIx makes its per-step folders): the nodes share one /tmp
    for sub in ("spool-", "tmp-"):
        os.makedirs(os.path.join(cluster, sub + HOST[i]), exist_ok=True)
    daemons = ("slurmctld -c -f $SLURM_CONF && " if i == 0 else "") + "slurmd -f $SLURM_CONF -N %s" % HOST[i]
    cp = subprocess.run(in_ns(i, ["unshare", "--uts", "sh", "-c", "hostname %s && %s" % (HOST[i], daemons)]),
                        env=env, capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        print(cp.stdout, cp.stderr)
        for f in sorted(os.listdir(os.path.join(cluster, "log"))):
            print("----", f, open(os.path.join(cluster, "log", f)).read()[-2000:])
        print("FAIL: the daemons of %s did not start" % HOST[i])
        sys.exit(1)


def node_states():
    return dict(ln.split() for ln in sh("sinfo", "-h", "-N", "-o", "%N %t", check=False).splitlines()
                if len(ln.split()) == 2)


t0 = time.time()
while time.time() - t0 < 60 and sorted(node_states().items()) != [(h, "idle") for h in HOST]:
    time.sleep(0.2)
c.check(sorted(node_states().items()) == [(h, "idle") for h in HOST],
        "two nodes, %s and %s, idle in their own namespaces (%s)" % (HOST[0], HOST[1], node_states()))
hosts = [subprocess.run(["nsenter", "-t", str(int(open(os.path.join(cluster, "slurmd-%s.pid" % h)).read())),
                         "-u", "-n", "sh", "-c", "hostname; ip -o -4 addr show"], capture_output=True, text=True,
                        env=env).stdout for h in HOST]
c.check(all(hosts[i].startswith(HOST[i] + "\n") and ADDR[i] in hosts[i] and ADDR[1 - i] not in hosts[i]
            for i in range(2)), "each slurmd has its own hostname and veth address")

held_since = {}


def release_begin_time():
    """Requeued jobs wait two minutes (Reason=BeginTime): let them start after 3 s."""
    now = time.time()
    for ln in sh("squeue", "-h", "-o", "%i %T %r", check=False).splitlines():
        f = ln.split()
        if len(f) == 3 and f[1] == "PENDING" and f[2] == "BeginTime":
            if now - held_since.setdefault(f[0], now) >= 3:
                sh("scontrol", "update", "JobId=" + f[0], "StartTime=now", check=False)
                del held_since[f[0]]


def job_field(jid, field):
    out = sh("scontrol", "-o", "show", "job", str(jid), check=False)
    m = re.search(r"\b%s=(\S*)" % field, out)
    return m.group(1) if m else ""


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


def ranks_on(i):
    """PIDs of morphcat processes in node i's namespace."""
    out = []
    for p in ns_pids(NS[i]):
        try:
            if open("/proc/%d/comm" % p).read().strip() == "morphcat":
                out.append(p)
        except OSError:
            pass
    return out


FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")
N = 720  # enough rows that the requeued job is still computing when node b's ranks are killed
sv = pl.survey(n=N, size=64, seed=31, broken=11)
model = pl.model()
d = mctest.tmpdir()
opts = "--recipe gz_decals --size 96 --progress-seconds 1000 --commit-seconds 0.5 --batch 4"
ref = os.path.join(d, "ref.h5")
t_ref = time.time()
mctest.mpirun(2, [mctest.MORPHCAT, "run", "--manifest", os.path.join(sv, "manifest.csv"), "--model", model, "--output",
                  ref, "--release", "DR-test"] + opts.split(), timeout=600)
print("one-node reference run (2 ranks): %.1f s" % (time.time() - t_ref))
refd, _ = pl.read_catalogue(ref)
env.update(MC_MORPHCAT=mctest.MORPHCAT, MC_MODEL=model, MC_RELEASE="DR-test")
verified = []

# ---- 1. one job on both nodes: preempted and requeued, then node b's ranks killed, then resubmitted ----
out1 = os.path.join(d, "job.h5")
e1 = dict(env, MC_MANIFEST=os.path.join(sv, "manifest.csv"), MC_OUT=out1, MC_LAUNCHER="srun", MC_RUN_OPTS=opts)


def submit(log):
    cp = subprocess.run(in_ns(0, ["sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1", "--time=10:00",
                                  "--output=" + log, os.path.join(ROOT, "slurm", "morphcat-run.sbatch")]),
                        env=e1, capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        print("sbatch failed:", cp.stdout, cp.stderr)
        raise SystemExit(1)
    return cp.stdout.strip().split(";")[0]


log1 = os.path.join(d, "job.log")
jid = submit(log1)
seen = [0, 0]


def running_on_both():
    for i in range(2):
        seen[i] = max(seen[i], len(ranks_on(i)))
    return done_rows(out1) >= 30 and min(seen) >= 1


ok = wait_until(running_on_both, "job %s to run on both nodes" % jid, 180)
c.check(ok and job_field(jid, "NodeList") in ("%s,%s" % tuple(HOST), "mcnode-[a-b]"),
        "job %s runs on both nodes (NodeList %s, morphcat ranks seen on a: %d, on b: %d) and writes one catalogue"
        % (jid, job_field(jid, "NodeList"), seen[0], seen[1]))
before = done_rows(out1)
sh("scontrol", "requeue", jid)  # as preemption with requeue does
ok = wait_until(lambda: int(job_field(jid, "Restarts") or 0) >= 1 and job_field(jid, "JobState") == "RUNNING"
                and done_rows(out1) >= before + 8 and ranks_on(1), "the requeued job to run again", 180)
c.check(ok, "preempted with requeue after %d galaxies; the requeued job resumed on both nodes (%d done now)"
        % (before, done_rows(out1)))
victims = ranks_on(1)
for p in victims:
    os.kill(p, signal.SIGKILL)
at_kill = done_rows(out1)
ok = wait_until(lambda: job_field(jid, "JobState") in FINAL, "job %s to end" % jid, 120)
state1 = job_field(jid, "JobState")
c.check(ok and state1 != "COMPLETED" and 0 < at_kill < N,
        "SIGKILL to node b's %d ranks at %d of %d galaxies: the job ends %s" % (len(victims), at_kill, N, state1))
log = open(log1).read() if os.path.exists(log1) else ""
c.check("SIGTERM" in log and "requeueing" in log and "restart 1" in log and "2 node(s)" in log,
        "the job's log shows 2 nodes, the preemption (TERM), the requeue and the restart")
jid2 = submit(os.path.join(d, "job2.log"))
ok = wait_until(lambda: job_field(jid2, "JobState") in FINAL, "job %s to end" % jid2, 240)
print(open(os.path.join(d, "job2.log")).read()[-2000:])
c.check(ok and job_field(jid2, "JobState") == "COMPLETED", "resubmitted as job %s on both nodes: resumed and completed"
        % jid2)
if os.path.exists(out1):
    got, _ = pl.read_catalogue(out1)
    ids = list(got["galaxies/id_str"])
    differ = [k for k in refd if not pl.same_values(got[k], refd[k])]
    c.check(len(ids) == N and ids == list(refd["galaxies/id_str"]) and not differ
            and not (got["galaxies/status"] == 0).any(),
            "the two-node catalogue: %d galaxies, each exactly once, bit-identical to the one-node run%s"
            % (len(ids), " (differ: %s)" % differ if differ else ""))
    verified.append("2-node job preempted+requeued, node b's ranks killed, resumed: %d rows = 1-node run" % N)

# ---- 2. an array of chunks over both nodes, then the merge ----
plan = os.path.join(d, "plan")
mctest.run(["plan", "--manifest", os.path.join(sv, "manifest.csv"), "--rate", "5", "--cores-per-node", "1",
            "--nodes", "2", "--chunk-rows", str(N // 4), "--batch", "4", "--startup-seconds", "10", "--out", plan])
outs = os.path.join(d, "chunks")
release = os.path.join(d, "release.h5")
e2 = dict(env, MC_LAUNCHER="srun", MC_RUN_OPTS=opts)
cp = subprocess.run(in_ns(0, ["sh", os.path.join(ROOT, "slurm", "submit.sh"), plan, outs, release]), env=e2,
                    capture_output=True, text=True, timeout=60)
print(cp.stdout, cp.stderr)
m = re.search(r"array job (\d+).*merge job (\d+)", cp.stdout)
c.check(cp.returncode == 0 and m is not None, "submit.sh submitted the array and the merge")
if m:
    arr, mrg = m.group(1), m.group(2)
    ok = wait_until(lambda: job_field(mrg, "JobState") in FINAL, "the merge job", 300)
    nodes = {t: job_field("%s_%d" % (arr, t), "NodeList") for t in range(4)}
    states = {t: job_field("%s_%d" % (arr, t), "JobState") for t in range(4)}
    c.check(all(s == "COMPLETED" for s in states.values()) and set(nodes.values()) == set(HOST),
            "4 array tasks completed, spread over both nodes (%s)" % nodes)
    c.check(ok and job_field(mrg, "JobState") == "COMPLETED", "the merge ran after the array and completed")
    if os.path.exists(release):
        got, _ = pl.read_catalogue(release)
        ids = list(got["galaxies/id_str"])
        differ = [k for k in refd if not pl.same_values(got[k], refd[k])]
        bad_msg = [i for i in range(N) if got["galaxies/message"][i] != refd["galaxies/message"][i]]
        c.check(len(ids) == N and ids == list(refd["galaxies/id_str"]) and not (got["galaxies/status"] == 0).any()
                and differ in ([], ["galaxies/message"]) and all(refd["galaxies/status"][i] == 6 for i in bad_msg),
                "release catalogue: %d galaxies, each exactly once, equal to the one-node run by id_str in every "
                "dataset (a bad manifest row's message names its row in the chunk) (differ: %s)" % (len(ids), differ))
        verified.append("4-chunk array over both nodes + merge: %d rows once = 1-node run" % N)
for f in sorted(os.listdir(outs)) if os.path.isdir(outs) else []:
    if f.endswith(".log"):
        print("----", f)
        print(open(os.path.join(outs, f)).read()[-800:])
print("%d checks, %d failed" % (c.n, c.failed))
print("verified: 2 Slurm nodes in 2 netns, MPI over TCP on a private veth /30; " + "; ".join(verified)
      if not c.failed else "FAILED: %d of %d checks" % (c.failed, c.n))
sys.exit(1 if c.failed else 0)
