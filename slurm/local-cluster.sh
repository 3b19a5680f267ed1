#!/bin/sh
# slurm/local-cluster.sh: a throw-away one-node Slurm cluster on this machine, for the tests: munged,
# slurmctld and slurmd as root, every file (config, key, state, spool, logs, pids) under DIR, private
# ports and a private munge socket, so a site's own Slurm or munge is never touched. Not for production.
#   sh slurm/local-cluster.sh start DIR [CPUS]   writes DIR/slurm.conf, starts the daemons, waits until
#                                                the node is idle; prints "export SLURM_CONF=DIR/slurm.conf"
#   sh slurm/local-cluster.sh stop DIR           stops the daemons by the PIDs in their pid files
# Exit status of start: 0 up; 1 a daemon failed (its log's last lines are printed); 77 Slurm or munge
# is not installed.
set -u
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [CPUS]" >&2; exit 2; }

stop_pid() { # stop_pid PIDFILE NAME: TERM, wait up to 10 s, then KILL
    [ -f "$1" ] || return 0
    pid=$(cat "$1" 2>/dev/null)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
    kill "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 "$pid" 2>/dev/null && { echo "local-cluster: $2 ($pid) ignored TERM, killing" >&2; kill -9 "$pid"; }
    rm -f "$1"
}

if [ "$cmd" = stop ]; then
    stop_pid "$dir/slurmd.pid" slurmd
    stop_pid "$dir/slurmctld.pid" slurmctld
    stop_pid "$dir/munged.pid" munged
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR [CPUS]" >&2; exit 2; }

cpus=${3:-2}
for b in munged slurmctld slurmd sbatch scontrol sinfo; do
    PATH="$PATH:/usr/sbin" command -v $b >/dev/null 2>&1 || { echo "local-cluster: $b is not installed (slurm-wlm, munge: tools/install-deps.sh)"; exit 77; }
done
PATH="$PATH:/usr/sbin"
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir"
host=$(hostname -s)
# private ports, derived from the folder so two clusters (two test runs) do not collide
sum=$(printf '%s' "$dir" | cksum | cut -d' ' -f1)
port=$((20000 + sum % 20000 / 2 * 2))

# munge: its own key and socket
if [ ! -f "$dir/munge.key" ]; then
    dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 2>/dev/null
    chmod 400 "$dir/munge.key"
fi
munged --force --key-file="$dir/munge.key" --socket="$dir/munge.sock" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed" 2>>"$dir/log/munged.log" || {
    echo "local-cluster: munged failed to start:"; tail -n 5 "$dir/log/munged.log"; exit 1; }

cat > "$dir/slurm.conf" <<CONF
# written by slurm/local-cluster.sh: one node, $cpus CPUs, no cgroups, no accounting
ClusterName=morphcat-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
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
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -c -f "$SLURM_CONF" || { echo "local-cluster: slurmctld failed to start:"; tail -n 15 "$dir/log/slurmctld.log"; exit 1; }
slurmd -f "$SLURM_CONF" || { echo "local-cluster: slurmd failed to start:"; tail -n 15 "$dir/log/slurmd.log"; exit 1; }
i=0
while [ $i -lt 300 ]; do
    state=$(sinfo -h -N -o '%t' 2>/dev/null | head -n 1)
    case "$state" in idle*) echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;; esac
    sleep 0.1; i=$((i + 1))
done
echo "local-cluster: the node did not become idle within 30 s (state '$state'):"
tail -n 10 "$dir/log/slurmctld.log"; tail -n 10 "$dir/log/slurmd.log"
exit 1
