/* nn/weights.h: released weight files read into named float32 tensors, with no Python at run time.
 * Knows the file formats (torch.save zip+pickle, safetensors, Lightning checkpoints); knows nothing of
 * architectures: which names and shapes a network needs is the architecture's business (nn/arch_*.c). */
#ifndef NN_WEIGHTS_H
#define NN_WEIGHTS_H

#include "mc.h"

#define NN_WMAXDIM 8

typedef enum {
    NN_WKIND_TORCH_ZIP,   /* torch.save(state_dict): pytorch_model.bin */
    NN_WKIND_SAFETENSORS, /* model.safetensors */
    NN_WKIND_LIGHTNING,   /* torch.save({'state_dict': ..., 'hyper_parameters': ...}): *.ckpt */
} nn_wkind;

typedef enum {
    NN_DT_F32,
    NN_DT_F64,
    NN_DT_F16,
    NN_DT_BF16,
    NN_DT_I64,
    NN_DT_I32,
    NN_DT_I16,
    NN_DT_I8,
    NN_DT_U8,
    NN_DT_BOOL,
} nn_dtype;

typedef struct nn_wtensor {
    char *name;    /* key exactly as stored (a Lightning file keeps its `encoder.` prefix) */
    nn_dtype dtype; /* element type in the file */
    int ndim;
    int64_t shape[NN_WMAXDIM];
    int64_t numel;
    float *data; /* contiguous row-major float32 copy for floating dtypes; NULL for integer/bool */
    int used;    /* set by whoever consumes the tensor, so unconsumed (extra) keys can be reported */
} nn_wtensor;

typedef struct nn_wfile {
    char *path;
    nn_wkind kind;
    int n;          /* number of tensors */
    nn_wtensor *t;  /* in file order */
    char *arch_hint; /* Lightning: hyper_parameters['architecture_name'] when it is a plain string, else NULL */
    int64_t file_bytes;
} nn_wfile;

/* Open and fully read a weight file. The kind is decided by content, not by name: a zip archive is a
 * torch.save file (a Lightning checkpoint when its pickle is a dict holding 'state_dict'); otherwise an
 * 8-byte little-endian header length followed by JSON is safetensors. On any problem returns -1 with one
 * line in err naming the file and the reason (truncated archive, unknown pickle opcode or global,
 * corrupt safetensors header, storage out of range, ...). Never crashes on malformed input. */
int nn_wfile_open(const char *path, nn_wfile **out, char *err);
void nn_wfile_close(nn_wfile *wf);

/* Exact-name lookup; NULL when absent. */
nn_wtensor *nn_wfile_find(const nn_wfile *wf, const char *name);

const char *nn_wkind_name(nn_wkind kind);
const char *nn_dtype_name(nn_dtype dt);

#endif
