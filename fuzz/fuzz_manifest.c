/* fuzz/fuzz_manifest.c: libFuzzer harness for CSV manifests (io_manifest_read): any bytes give a manifest whose bad
 * rows say why, or one message; never a crash. */
#include "fuzz_common.h"
#include "io/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    io_manifest m;
    char err[MC_ERR_LEN];
    memset(&m, 0, sizeof m);
    if (io_manifest_read(fuzz_write("manifest.csv", data, n), &m, err) == 0) io_manifest_free(&m);
    return 0;
}
