/* fuzz/fuzz_config.c: libFuzzer harness for a Hub folder's config.json (read by nn_model_load before the weights,
 * which here are an empty file, so every input ends in a message). */
#include "fuzz_common.h"
#include "nn/nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    fuzz_write("model.safetensors", (const uint8_t *)"", 0);
    const char *cfg = fuzz_write("config.json", data, n);
    char dir[512], err[MC_ERR_LEN];
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(cfg, '/') - cfg), cfg);
    nn_model *m = NULL;
    if (nn_model_load(dir, &m, err) == 0) nn_model_free(m);
    return 0;
}
