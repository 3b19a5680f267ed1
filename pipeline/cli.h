/* pipeline/cli.h: the morphcat subcommands. Each returns the process exit status:
 * 0 success, 1 a whole-run failure (bad arguments, unreadable model, unwritable output),
 * 3 the run finished but some inputs were bad (reported one line each; their rows are NaN). */
#ifndef PIPELINE_CLI_H
#define PIPELINE_CLI_H

#define MC_EXIT_OK 0
#define MC_EXIT_FAIL 1
#define MC_EXIT_USAGE 2
#define MC_EXIT_PARTIAL 3
#define MC_EXIT_STOPPED 4 /* run, rerun: a signal stopped the job after it committed; rerun the command */

int cmd_forward(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_weights(int argc, char **argv);
int cmd_cutout(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_rerun(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_mosaic(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_pca(int argc, char **argv);
int cmd_similar(int argc, char **argv);
int cmd_anomalies(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_predict(int argc, char **argv);

/* True when argv holds -h or --help. */
int cli_wants_help(int argc, char **argv);

#endif
