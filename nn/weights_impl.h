/* nn/weights_impl.h: what the weight-file readers (nn/weights*.c) share and nothing else includes (except the
 * pickle unit test): the pickle value model, the pickle VM entry point, the per-format open functions and
 * small helpers for dtypes, float conversion and quoting untrusted names in messages.
 * It is not a public API: architectures use nn/weights.h only. */
#ifndef NN_WEIGHTS_IMPL_H
#define NN_WEIGHTS_IMPL_H

#include "nn/weights.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error                                                                                                       \
    "the weight readers copy little-endian file bytes straight into memory: a little-endian host is required"
#endif

/* ---- pickle values ------------------------------------------------------------------------------------- */

/* Everything the VM builds lives in one arena, freed at once: pickles share objects through the memo and may
 * even hold cycles, so per-object ownership would buy nothing. */
typedef struct wt_arena_chunk wt_arena_chunk;
typedef struct {
    wt_arena_chunk *head;
    size_t total; /* bytes handed out so far, checked against cap */
    size_t cap;
} wt_arena;

typedef enum {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_BIGINT, /* an integer beyond int64: kept as an opaque number, never needed by a tensor */
    PK_FLOAT,
    PK_STR,
    PK_BYTES,
    PK_TUPLE,
    PK_LIST,
    PK_SET,
    PK_DICT,    /* dict and collections.OrderedDict alike; pairs in insertion order, duplicates kept */
    PK_GLOBAL,  /* a module.name reference; never imported, only classified */
    PK_OBJ,     /* the result of calling or instantiating something we do not build: opaque */
    PK_STORAGE, /* a torch storage named by a persistent id */
    PK_TENSOR,  /* a call of one of torch's tensor rebuild functions, resolved later */
} pk_type;

/* What a global is to us. Anything not listed is PK_G_UNKNOWN: opaque, allowed only where it cannot reach
 * the tensors. */
typedef enum {
    PK_G_UNKNOWN,
    PK_G_HARMLESS, /* known to be inert here (builtins.object ...): calling it gives an opaque value */
    PK_G_DICT,     /* collections.OrderedDict, builtins.dict */
    PK_G_SET,
    PK_G_FROZENSET,
    PK_G_LIST,
    PK_G_TUPLE,
    PK_G_BYTES,       /* _codecs.encode (protocol 2 bytes), builtins.bytearray */
    PK_G_RECONSTRUCT, /* copyreg._reconstructor / __newobj__: opaque instance of its first argument */
    PK_G_REBUILD_TENSOR_V2,
    PK_G_REBUILD_TENSOR,
    PK_G_REBUILD_PARAMETER,
    PK_G_REBUILD_PARAMETER_WITH_STATE,
    PK_G_REBUILD_FROM_TYPE_V2,
    PK_G_TENSOR_TYPE, /* torch.Tensor, torch.nn.parameter.Parameter: only as _rebuild_from_type_v2's type */
    PK_G_STORAGE,     /* torch.FloatStorage ...: u.glob.dtype says which */
    PK_G_STORAGE_UNSUPPORTED, /* complex and quantized storages */
} pk_gkind;

typedef struct pk_value pk_value;
struct pk_value {
    pk_type type;
    uint32_t seen; /* walk stamp, so graph walks visit each value once even through cycles */
    union {
        int64_t i; /* PK_BOOL, PK_INT */
        double f;
        struct {
            char *s; /* NUL-terminated copy; may hold inner NULs, so n is the length */
            size_t n;
        } str; /* PK_STR (UTF-8), PK_BYTES */
        struct {
            pk_value **v;
            size_t n, cap;
        } seq; /* PK_TUPLE, PK_LIST, PK_SET */
        struct {
            pk_value **kv;   /* kv[2i] key, kv[2i+1] value */
            size_t n, cap;   /* pairs */
            pk_value *state; /* BUILD state (OrderedDict's _metadata): kept only so walks see it */
        } dict;
        struct {
            const char *module, *name;
            pk_gkind kind;
            nn_dtype dtype; /* PK_G_STORAGE */
        } glob;
        struct {
            const pk_value *root; /* the PK_GLOBAL this object came from, for messages and policy */
            pk_value *callee, *args, *state;
            pk_value *dict, *items; /* SETITEM(S) / APPEND(S) / ADDITEMS applied to it, created lazily */
        } obj;
        struct {
            const pk_value *cls; /* PK_GLOBAL */
            const char *key;
            int64_t numel;
        } storage;
        struct {
            pk_gkind kind;  /* one of the PK_G_REBUILD_* */
            pk_value *args; /* PK_TUPLE */
        } tensor;
    } u;
};

typedef struct {
    const pk_value *first_unknown; /* first PK_G_UNKNOWN global the pickle named, NULL if none */
    uint32_t stamp;                /* last stamp used by wt_pickle_walk */
} pk_info;

/* Runs the pickle in buf[0..len) to its STOP. `what` names it in messages ("model.ckpt: data.pkl").
 * Never calls or imports anything: globals become classified references. Returns -1 with one line in err
 * naming the opcode byte and offset on malformed or unsupported input. */
int wt_pickle_load(wt_arena *a, const uint8_t *buf, size_t len, const char *what, pk_value **root,
                   pk_info *info, char *err);

/* Finds the first PK_G_UNKNOWN global reachable from v (iteratively, cycle-safe); NULL if none. */
const pk_value *wt_pickle_find_unknown(const pk_value *v, pk_info *info);

/* Last value stored under the string key in a dict (Python keeps the last of duplicate keys); NULL if absent.
 */
pk_value *wt_pickle_dict_get(const pk_value *dict, const char *key);

const char *wt_pickle_type_name(const pk_value *v);

void wt_arena_init(wt_arena *a, size_t cap);
void wt_arena_free(wt_arena *a);
void *wt_arena_alloc(wt_arena *a, size_t n); /* NULL when the cap would be passed */

/* ---- formats ------------------------------------------------------------------------------------------- */

int wt_torchzip_open(nn_wfile *wf, char *err);
int wt_safetensors_open(nn_wfile *wf, char *err);

/* ---- helpers (nn/weights.c) ---------------------------------------------------------------------------- */

size_t wt_dtype_size(nn_dtype dt);
int wt_dtype_is_float(nn_dtype dt);
float wt_f16_to_f32(uint16_t h);
float wt_bf16_to_f32(uint16_t h);
/* Converts n elements of a floating dtype (little-endian bytes) to float32. */
void wt_convert(const uint8_t *src, nn_dtype dt, int64_t n, float *dst);
/* Gathers a strided view (element offset and strides) of a floating storage into contiguous float32. */
void wt_gather(const uint8_t *src, nn_dtype dt, int64_t offset, int ndim, const int64_t *shape,
               const int64_t *stride, float *dst);

/* Writes a printable, length-limited rendering of untrusted bytes into buf (cap >= 8): non-printable
 * bytes become \xHH, so a crafted name cannot break a one-line message. Returns buf. */
char *wt_quote(const char *s, size_t n, char *buf, size_t cap);
#define WT_QUOTE_LEN 100

/* Sets *numel; -1 when the product overflows int64 or a dimension is negative. */
int wt_shape_numel(int ndim, const int64_t *shape, int64_t *numel);
/* Fails when two tensors share a name. */
int wt_check_unique_names(const nn_wfile *wf, char *err);

#endif
