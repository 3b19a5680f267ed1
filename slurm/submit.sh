#!/bin/sh
# slurm/submit.sh: submits a planned survey: the chunk array (slurm/morphcat-run.sbatch, sized by the plan)
# and the merge (slurm/morphcat-merge.sbatch) chained with --dependency=afterok. Prints the two job ids.
#   sh slurm/submit.sh PLAN_DIR OUT_DIR RELEASE.h5 [extra sbatch options, e.g. --partition=cpu --account=X]
# The job settings come from the environment (MC_MORPHCAT, MC_MODEL, MC_RELEASE, MC_RUN_OPTS, MC_LAUNCHER;
# see the top of morphcat-run.sbatch); the run options must include the --batch the plan was made with.
set -eu
[ $# -ge 3 ] || { echo "usage: sh slurm/submit.sh PLAN_DIR OUT_DIR RELEASE.h5 [sbatch options]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
plan=$(cd "$1" && pwd); out=$2; release=$3; shift 3
mkdir -p "$out"; out=$(cd "$out" && pwd)
. "$plan/plan.env"
case " ${MC_RUN_OPTS:-} " in
    *" --batch $MC_PLAN_BATCH "*|*" --batch=$MC_PLAN_BATCH "*) ;;
    *) MC_RUN_OPTS="${MC_RUN_OPTS:---recipe gz_decals} --batch $MC_PLAN_BATCH" ;;
esac
export MC_PLAN="$plan" MC_OUT="$out" MC_RELEASE_CATALOGUE="$release" MC_RUN_OPTS
array=$(sbatch --parsable --array="$MC_PLAN_ARRAY" --nodes="$MC_PLAN_NODES_PER_TASK" \
    --ntasks-per-node="$MC_PLAN_TASKS_PER_NODE" --time="$MC_PLAN_TIME" --signal="B:USR1@$MC_PLAN_SIGNAL_SECONDS" \
    --output="$out/morphcat-run-%A_%a.log" "$@" "$here/morphcat-run.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --output="$out/morphcat-merge-%j.log" "$@" \
    "$here/morphcat-merge.sbatch")
merge=${merge%%;*}
echo "submitted: array job $array ($MC_PLAN_CHUNKS chunks, $MC_PLAN_ARRAY), merge job $merge (after all succeed)"
echo "follow it: morphcat status --plan $plan --outputs $out"
