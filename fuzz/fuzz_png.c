/* fuzz/fuzz_png.c: libFuzzer harness for the PNG cutout reader (io_cutout_read on a file named x.png),
 * which must return a status and a message for any bytes, never crash or read out of bounds. */
#include "fuzz_common.h"
#include "io/cutout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    static io_cutout c; /* the pixel buffer is reused across inputs, as the loader does */
    char err[MC_ERR_LEN];
    io_read_opts o = {NULL};
    io_cutout_read(fuzz_write("x.png", data, n), &o, &c, err);
    return 0;
}
