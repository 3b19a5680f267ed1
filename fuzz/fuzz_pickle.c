/* fuzz/fuzz_pickle.c: libFuzzer harness for the pickle machine alone (wt_pickle_load on the bytes, as it runs on a
 * torch.save archive's data.pkl), then the search for unknown globals the loader makes on its result. */
#include "fuzz_common.h"
#include "nn/weights_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    wt_arena a;
    wt_arena_init(&a, (size_t)64 << 20);
    pk_value *root = NULL;
    pk_info info = {0};
    char err[MC_ERR_LEN];
    if (wt_pickle_load(&a, data, n, "fuzz: data.pkl", &root, &info, err) == 0 && root)
        wt_pickle_find_unknown(root, &info);
    wt_arena_free(&a);
    return 0;
}
