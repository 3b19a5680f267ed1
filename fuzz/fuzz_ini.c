/* fuzz/fuzz_ini.c: libFuzzer harness for the job's INI file (morphcat run --config, parsed by inih into the job's
 * options): any bytes give a job or one message. */
#include "fuzz_common.h"
#include "pipeline/run.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    const char *ini = fuzz_write("job.ini", data, n);
    char path[512], err[MC_ERR_LEN];
    snprintf(path, sizeof path, "%s", ini);
    char *argv[] = {"run", "--config", path, NULL};
    static mc_job job;
    mc_job_parse(3, argv, &job, err);
    return 0;
}
