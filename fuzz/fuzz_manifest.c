/* fuzz/fuzz_manifest.c: libFuzzer harness for CSV manifests (io_manifest_read): any bytes give a manifest whose bad
 * rows say why, or one message; never a crash. The streaming reader (io_manifest_scan, with its duplicate check
 * forced through on-disk runs of 2 rows and 3-bit hashes, so collisions are common) must give the same verdict,
 * message, row count and checksum: a difference aborts. */
#include "fuzz_common.h"
#include "io/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    io_manifest m;
    char err[MC_ERR_LEN];
    memset(&m, 0, sizeof m);
    const char *path = fuzz_write("manifest.csv", data, n);
    int rc = io_manifest_read(path, &m, err);
    io_manifest_info info;
    char err2[MC_ERR_LEN];
    const io_manifest_scan_opts o = {.unique = 1, .sort_rows = 2, .hash_bits = 3};
    int rc2 = io_manifest_scan(path, &o, NULL, NULL, &info, err2);
    MC_ASSERT(rc == rc2 && (rc ? !strcmp(err, err2) : info.n == m.n && !strcmp(info.sha256, m.sha256)));
    if (rc == 0) io_manifest_free(&m);
    return 0;
}
