/* fuzz/fuzz_weights.c: libFuzzer harness for the weight-file reader (nn_wfile_open: torch.save zip archives with
 * their pickles, Lightning checkpoints and safetensors, chosen by content), which must refuse any malformed file
 * with one message, never crash. */
#include "fuzz_common.h"
#include "nn/weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    nn_wfile *wf = NULL;
    char err[MC_ERR_LEN];
    if (nn_wfile_open(fuzz_write("w.bin", data, n), &wf, err) == 0) nn_wfile_close(wf);
    return 0;
}
