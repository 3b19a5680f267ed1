/* nn/weights_pickle.c: a small, strict pickle virtual machine for the data.pkl inside torch.save archives
 * (protocols 0 to 4, and protocol 5's BYTEARRAY8). It builds plain values and classifies globals; it never
 * imports, calls or instantiates anything, so an unknown class or function becomes an opaque value. It does
 * not decide what a file means (that is nn/weights_torchzip.c), and it rejects EXT1/2/4 and out-of-band
 * buffers. Every read is bounds-checked; the VM is iterative, so nesting cannot exhaust the C stack. */
#include "nn/weights_impl.h"

#include <errno.h>
#include <math.h>

/* ---- arena --------------------------------------------------------------------------------------------- */

struct wt_arena_chunk {
    wt_arena_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

void wt_arena_init(wt_arena *a, size_t cap)
{
    a->head = NULL;
    a->total = 0;
    a->cap = cap;
}

void wt_arena_free(wt_arena *a)
{
    wt_arena_chunk *c = a->head;
    while (c) {
        wt_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

void *wt_arena_alloc(wt_arena *a, size_t n)
{
    const size_t al = sizeof(max_align_t);
    if (n > a->cap) return NULL;
    n = (n + al - 1) / al * al;
    if (a->total > a->cap - n) return NULL;
    wt_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > (1u << 16) ? n : (1u << 16);
        c = mc_malloc(sizeof *c + cap);
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    a->total += n;
    memset(p, 0, n);
    return p;
}

/* ---- the machine --------------------------------------------------------------------------------------- */

/* Memo indices of a real pickle count up from 0, one per PUT of at least two bytes, so an index far beyond
 * the pickle's length can only be an attack on memory. */
#define PK_MEMO_HARD_CAP (1u << 26)

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    size_t op_pos; /* offset of the opcode being executed */
    uint8_t op;
    wt_arena *a;
    const char *what;
    char *err;
    pk_value **stack;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    pk_value **memo;
    size_t memo_cap, memo_count, memo_limit;
    pk_info *info;
    pk_value *none, *true_, *false_; /* shared singletons, in the arena */
} pk_vm;

static MC_PRINTF(2, 3) int pk_fail(pk_vm *vm, const char *fmt, ...)
{
    char reason[MC_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return mc_fail(vm->err, "%s: %s (opcode 0x%02x at byte %zu)", vm->what, reason, vm->op, vm->op_pos);
}

static int pk_oom(pk_vm *vm)
{
    return pk_fail(vm, "pickle needs more than %zu MiB of objects; refusing", vm->a->cap >> 20);
}

static pk_value *pk_new(pk_vm *vm, pk_type t)
{
    pk_value *v = wt_arena_alloc(vm->a, sizeof *v);
    if (v) v->type = t;
    return v;
}

/* Returns a pointer to n readable bytes and advances, or NULL (with the error set) when the pickle ends. */
static const uint8_t *pk_read(pk_vm *vm, size_t n)
{
    if (n > vm->len - vm->pos) {
        pk_fail(vm, "pickle truncated: needs %zu more bytes, %zu left", n, vm->len - vm->pos);
        return NULL;
    }
    const uint8_t *q = vm->p + vm->pos;
    vm->pos += n;
    return q;
}

static int pk_read_uint(pk_vm *vm, size_t n, uint64_t *out)
{
    const uint8_t *q = pk_read(vm, n);
    if (!q) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)q[i] << (8 * i);
    *out = v;
    return 0;
}

/* A text argument of the protocol 0 opcodes: the bytes up to '\n', which is consumed. */
static const char *pk_read_line(pk_vm *vm, size_t *n)
{
    const uint8_t *start = vm->p + vm->pos;
    const uint8_t *nl = memchr(start, '\n', vm->len - vm->pos);
    if (!nl) {
        pk_fail(vm, "pickle truncated: text argument without its newline");
        return NULL;
    }
    *n = (size_t)(nl - start);
    vm->pos += *n + 1;
    return (const char *)start;
}

static int pk_push(pk_vm *vm, pk_value *v)
{
    if (!v) return pk_oom(vm);
    if (vm->sn == vm->scap) {
        vm->scap = vm->scap ? 2 * vm->scap : 64;
        vm->stack = mc_realloc(vm->stack, vm->scap * sizeof *vm->stack);
    }
    vm->stack[vm->sn++] = v;
    return 0;
}

/* Items above the innermost mark: what Python's unpickler calls its current stack. */
static size_t pk_avail(const pk_vm *vm)
{
    return vm->sn - (vm->mn ? vm->marks[vm->mn - 1] : 0);
}

static pk_value *pk_pop(pk_vm *vm)
{
    if (pk_avail(vm) == 0) {
        pk_fail(vm, "pickle stack underflow");
        return NULL;
    }
    return vm->stack[--vm->sn];
}

static pk_value *pk_top(pk_vm *vm)
{
    if (pk_avail(vm) == 0) {
        pk_fail(vm, "pickle stack underflow");
        return NULL;
    }
    return vm->stack[vm->sn - 1];
}

/* Pops back to the innermost mark; the popped items stay readable at stack[*first .. *first + *n). */
/* The stack from index i on; NULL while the stack was never allocated (an empty MARK at the very start: adding
 * even 0 to a null pointer is undefined behaviour, found by fuzz/fuzz_pickle.c). */
static pk_value **pk_stack_at(pk_vm *vm, size_t i)
{
    return vm->stack ? vm->stack + i : NULL;
}

static int pk_pop_mark(pk_vm *vm, size_t *first, size_t *n)
{
    if (vm->mn == 0) return pk_fail(vm, "pickle has no MARK to pop to");
    size_t m = vm->marks[--vm->mn];
    *first = m;
    *n = vm->sn - m;
    vm->sn = m;
    return 0;
}

static pk_value *pk_new_str(pk_vm *vm, pk_type t, const void *s, size_t n)
{
    pk_value *v = pk_new(vm, t);
    if (!v) return NULL;
    if (n == SIZE_MAX) return NULL;
    char *c = wt_arena_alloc(vm->a, n + 1);
    if (!c) return NULL;
    if (n) memcpy(c, s, n);
    c[n] = 0;
    v->u.str.s = c;
    v->u.str.n = n;
    return v;
}

static pk_value *pk_new_seq(pk_vm *vm, pk_type t, pk_value *const *items, size_t n)
{
    pk_value *v = pk_new(vm, t);
    if (!v) return NULL;
    if (n) {
        if (n > SIZE_MAX / sizeof(pk_value *)) return NULL;
        v->u.seq.v = wt_arena_alloc(vm->a, n * sizeof(pk_value *));
        if (!v->u.seq.v) return NULL;
        memcpy(v->u.seq.v, items, n * sizeof(pk_value *));
    }
    v->u.seq.n = v->u.seq.cap = n;
    return v;
}

/* Arena arrays cannot be realloc'ed: grow by doubling into a fresh block (at most 2x waste). */
static int pk_grow(pk_vm *vm, pk_value ***arr, size_t *cap, size_t used, size_t need)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 4;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / sizeof(pk_value *)) return pk_oom(vm);
        nc *= 2;
    }
    pk_value **na = wt_arena_alloc(vm->a, nc * sizeof(pk_value *));
    if (!na) return pk_oom(vm);
    if (used) memcpy(na, *arr, used * sizeof(pk_value *));
    *arr = na;
    *cap = nc;
    return 0;
}

static int pk_seq_extend(pk_vm *vm, pk_value *seq, pk_value *const *items, size_t n)
{
    if (n == 0) return 0;
    if (pk_grow(vm, &seq->u.seq.v, &seq->u.seq.cap, seq->u.seq.n, seq->u.seq.n + n)) return -1;
    memcpy(seq->u.seq.v + seq->u.seq.n, items, n * sizeof(pk_value *));
    seq->u.seq.n += n;
    return 0;
}

/* items holds n/2 key, value pairs. */
static int pk_dict_extend(pk_vm *vm, pk_value *d, pk_value *const *items, size_t n)
{
    if (n % 2) return pk_fail(vm, "odd number of items for a dict (a key without its value)");
    size_t pairs = n / 2;
    if (pairs == 0) return 0;
    size_t cap2 = 2 * d->u.dict.cap;
    if (pk_grow(vm, &d->u.dict.kv, &cap2, 2 * d->u.dict.n, 2 * (d->u.dict.n + pairs))) return -1;
    d->u.dict.cap = cap2 / 2;
    memcpy(d->u.dict.kv + 2 * d->u.dict.n, items, n * sizeof(pk_value *));
    d->u.dict.n += pairs;
    return 0;
}

/* Lazily gives an opaque object the dict or list part that SETITEM(S) or APPEND(S) fill. */
static pk_value *pk_obj_part(pk_vm *vm, pk_value *obj, int want_dict)
{
    pk_value **slot = want_dict ? &obj->u.obj.dict : &obj->u.obj.items;
    if (!*slot) *slot = pk_new(vm, want_dict ? PK_DICT : PK_LIST);
    return *slot;
}

const char *wt_pickle_type_name(const pk_value *v)
{
    switch (v->type) {
    case PK_NONE:
        return "None";
    case PK_BOOL:
        return "bool";
    case PK_INT:
    case PK_BIGINT:
        return "int";
    case PK_FLOAT:
        return "float";
    case PK_STR:
        return "str";
    case PK_BYTES:
        return "bytes";
    case PK_TUPLE:
        return "tuple";
    case PK_LIST:
        return "list";
    case PK_SET:
        return "set";
    case PK_DICT:
        return "dict";
    case PK_GLOBAL:
        return "global";
    case PK_OBJ:
        return "object";
    case PK_STORAGE:
        return "storage";
    case PK_TENSOR:
        return "tensor";
    }
    return "?";
}

/* ---- globals ------------------------------------------------------------------------------------------- */

typedef struct {
    const char *module, *name;
    pk_gkind kind;
    nn_dtype dtype;
} pk_known_global;

/* Protocol 2 pickles written by Python 3 spell builtins as __builtin__ and copyreg as copy_reg (pickle's
 * fix_imports), so both spellings are listed. */
static const pk_known_global pk_known[] = {
    {"collections", "OrderedDict", PK_G_DICT, 0},
    {"builtins", "dict", PK_G_DICT, 0},
    {"__builtin__", "dict", PK_G_DICT, 0},
    {"builtins", "set", PK_G_SET, 0},
    {"__builtin__", "set", PK_G_SET, 0},
    {"builtins", "frozenset", PK_G_FROZENSET, 0},
    {"__builtin__", "frozenset", PK_G_FROZENSET, 0},
    {"builtins", "list", PK_G_LIST, 0},
    {"__builtin__", "list", PK_G_LIST, 0},
    {"builtins", "tuple", PK_G_TUPLE, 0},
    {"__builtin__", "tuple", PK_G_TUPLE, 0},
    {"builtins", "bytearray", PK_G_BYTES, 0},
    {"__builtin__", "bytearray", PK_G_BYTES, 0},
    {"builtins", "bytes", PK_G_BYTES, 0},
    {"_codecs", "encode", PK_G_BYTES, 0},
    {"builtins", "object", PK_G_HARMLESS, 0},
    {"__builtin__", "object", PK_G_HARMLESS, 0},
    {"copyreg", "_reconstructor", PK_G_RECONSTRUCT, 0},
    {"copy_reg", "_reconstructor", PK_G_RECONSTRUCT, 0},
    {"copyreg", "__newobj__", PK_G_RECONSTRUCT, 0},
    {"copy_reg", "__newobj__", PK_G_RECONSTRUCT, 0},
    {"torch._utils", "_rebuild_tensor_v2", PK_G_REBUILD_TENSOR_V2, 0},
    {"torch._utils", "_rebuild_tensor", PK_G_REBUILD_TENSOR, 0},
    {"torch._utils", "_rebuild_parameter", PK_G_REBUILD_PARAMETER, 0},
    {"torch._utils", "_rebuild_parameter_with_state", PK_G_REBUILD_PARAMETER_WITH_STATE, 0},
    {"torch._tensor", "_rebuild_from_type_v2", PK_G_REBUILD_FROM_TYPE_V2, 0},
    {"torch", "Tensor", PK_G_TENSOR_TYPE, 0},
    {"torch._tensor", "Tensor", PK_G_TENSOR_TYPE, 0},
    {"torch.nn.parameter", "Parameter", PK_G_TENSOR_TYPE, 0},
    {"torch", "FloatStorage", PK_G_STORAGE, NN_DT_F32},
    {"torch", "DoubleStorage", PK_G_STORAGE, NN_DT_F64},
    {"torch", "HalfStorage", PK_G_STORAGE, NN_DT_F16},
    {"torch", "BFloat16Storage", PK_G_STORAGE, NN_DT_BF16},
    {"torch", "LongStorage", PK_G_STORAGE, NN_DT_I64},
    {"torch", "IntStorage", PK_G_STORAGE, NN_DT_I32},
    {"torch", "ShortStorage", PK_G_STORAGE, NN_DT_I16},
    {"torch", "CharStorage", PK_G_STORAGE, NN_DT_I8},
    {"torch", "ByteStorage", PK_G_STORAGE, NN_DT_U8},
    {"torch", "BoolStorage", PK_G_STORAGE, NN_DT_BOOL},
    {"torch", "UntypedStorage", PK_G_STORAGE, NN_DT_U8},
    {"torch", "ComplexFloatStorage", PK_G_STORAGE_UNSUPPORTED, 0},
    {"torch", "ComplexDoubleStorage", PK_G_STORAGE_UNSUPPORTED, 0},
    {"torch", "QInt8Storage", PK_G_STORAGE_UNSUPPORTED, 0},
    {"torch", "QUInt8Storage", PK_G_STORAGE_UNSUPPORTED, 0},
    {"torch", "QInt32Storage", PK_G_STORAGE_UNSUPPORTED, 0},
    {"torch", "QUInt4x2Storage", PK_G_STORAGE_UNSUPPORTED, 0},
    {"torch", "QUInt2x4Storage", PK_G_STORAGE_UNSUPPORTED, 0},
};

static int pk_text_eq(const char *a, size_t an, const char *b)
{
    return strlen(b) == an && !memcmp(a, b, an);
}

/* Returns NULL with the error set for a name no Python import could resolve (these names go into messages,
 * which must stay one line), NULL without it when out of memory. */
static pk_value *pk_new_global(pk_vm *vm, const char *mod, size_t mn, const char *name, size_t nn)
{
    for (size_t i = 0; i < mn + nn; i++) {
        unsigned char ch = (unsigned char)(i < mn ? mod[i] : name[i - mn]);
        if (ch < 0x20 || ch == 0x7f) {
            pk_fail(vm, "global name holds control characters");
            return NULL;
        }
    }
    pk_value *g = pk_new(vm, PK_GLOBAL);
    if (!g) return NULL;
    pk_value *ms = pk_new_str(vm, PK_STR, mod, mn), *ns = pk_new_str(vm, PK_STR, name, nn);
    if (!ms || !ns) return NULL;
    g->u.glob.module = ms->u.str.s;
    g->u.glob.name = ns->u.str.s;
    g->u.glob.kind = PK_G_UNKNOWN;
    for (size_t i = 0; i < sizeof pk_known / sizeof pk_known[0]; i++) {
        if (pk_text_eq(mod, mn, pk_known[i].module) && pk_text_eq(name, nn, pk_known[i].name)) {
            g->u.glob.kind = pk_known[i].kind;
            g->u.glob.dtype = pk_known[i].dtype;
            break;
        }
    }
    if (g->u.glob.kind == PK_G_UNKNOWN && !vm->info->first_unknown) vm->info->first_unknown = g;
    return g;
}

/* The global an opaque object or global value traces back to. */
static const pk_value *pk_root_global(const pk_value *v)
{
    if (v->type == PK_GLOBAL) return v;
    if (v->type == PK_OBJ) return v->u.obj.root;
    return NULL;
}

static pk_value *pk_new_obj(pk_vm *vm, pk_value *callee, pk_value *args)
{
    pk_value *o = pk_new(vm, PK_OBJ);
    if (!o) return NULL;
    o->u.obj.root = pk_root_global(callee);
    MC_ASSERT(o->u.obj.root);
    o->u.obj.callee = callee;
    o->u.obj.args = args;
    return o;
}

/* Items of a list, tuple or set argument (the iterable given to set(), list() ...). */
static int pk_iterable(const pk_value *v, pk_value *const **items, size_t *n)
{
    if (v->type != PK_TUPLE && v->type != PK_LIST && v->type != PK_SET) return 0;
    *items = v->u.seq.v;
    *n = v->u.seq.n;
    return 1;
}

/* REDUCE, NEWOBJ, INST, OBJ: what calling callee(*args) gives, without calling anything. Known containers
 * are built, torch's rebuild functions become PK_TENSOR to be checked later, the rest is opaque. */
static pk_value *pk_call(pk_vm *vm, pk_value *callee, pk_value *args)
{
    if (callee->type == PK_OBJ) return pk_new_obj(vm, callee, args);
    if (callee->type != PK_GLOBAL) {
        pk_fail(vm, "cannot call a value of type %s", wt_pickle_type_name(callee));
        return NULL;
    }
    if (args->type != PK_TUPLE) {
        pk_fail(vm, "arguments of %s.%s are of type %s, not a tuple", callee->u.glob.module,
                callee->u.glob.name, wt_pickle_type_name(args));
        return NULL;
    }
    size_t na = args->u.seq.n;
    pk_value *const *av = args->u.seq.v;
    pk_value *const *items;
    size_t ni;
    switch (callee->u.glob.kind) {
    case PK_G_DICT: {
        pk_value *d = pk_new(vm, PK_DICT);
        if (!d) return NULL;
        if (na == 0) return d;
        /* OrderedDict([(k, v), ...]) */
        if (na == 1 && pk_iterable(av[0], &items, &ni)) {
            for (size_t i = 0; i < ni; i++) {
                pk_value *const *kv;
                size_t nkv;
                if (!pk_iterable(items[i], &kv, &nkv) || nkv != 2) {
                    pk_fail(vm, "dict built from an item that is not a (key, value) pair");
                    return NULL;
                }
                if (pk_dict_extend(vm, d, kv, 2)) return NULL;
            }
            return d;
        }
        return pk_new_obj(vm, callee, args);
    }
    case PK_G_SET:
    case PK_G_FROZENSET:
    case PK_G_LIST:
    case PK_G_TUPLE: {
        pk_type t = callee->u.glob.kind == PK_G_LIST    ? PK_LIST
                    : callee->u.glob.kind == PK_G_TUPLE ? PK_TUPLE
                                                        : PK_SET;
        if (na == 0) return pk_new_seq(vm, t, NULL, 0);
        if (na == 1 && pk_iterable(av[0], &items, &ni)) return pk_new_seq(vm, t, items, ni);
        return pk_new_obj(vm, callee, args);
    }
    case PK_G_BYTES: {
        /* _codecs.encode(str, 'latin1') or bytearray(...): the content is never needed, only its kind, so
         * the text is kept as it came rather than re-encoded */
        if (na >= 1 && (av[0]->type == PK_STR || av[0]->type == PK_BYTES))
            return pk_new_str(vm, PK_BYTES, av[0]->u.str.s, av[0]->u.str.n);
        return pk_new_str(vm, PK_BYTES, "", 0);
    }
    case PK_G_RECONSTRUCT:
        /* copyreg._reconstructor(cls, base, state) / __newobj__(cls, *args): an instance of cls */
        if (na >= 1 && pk_root_global(av[0])) return pk_new_obj(vm, av[0], args);
        return pk_new_obj(vm, callee, args);
    case PK_G_REBUILD_TENSOR_V2:
    case PK_G_REBUILD_TENSOR:
    case PK_G_REBUILD_PARAMETER:
    case PK_G_REBUILD_PARAMETER_WITH_STATE:
    case PK_G_REBUILD_FROM_TYPE_V2: {
        pk_value *t = pk_new(vm, PK_TENSOR);
        if (!t) return NULL;
        t->u.tensor.kind = callee->u.glob.kind;
        t->u.tensor.args = args;
        return t;
    }
    case PK_G_UNKNOWN:
    case PK_G_HARMLESS:
    case PK_G_TENSOR_TYPE:
    case PK_G_STORAGE:
    case PK_G_STORAGE_UNSUPPORTED:
        return pk_new_obj(vm, callee, args);
    }
    MC_ASSERT(0 && "unhandled global kind");
}

/* persistent_load: torch's ('storage', storage_type, key, location, numel). Anything else is what torch.load
 * itself would refuse. */
static pk_value *pk_persistent_load(pk_vm *vm, pk_value *pid)
{
    if (pid->type != PK_TUPLE || pid->u.seq.n != 5) {
        pk_fail(vm,
                "persistent id is of type %s, not torch's 5-tuple ('storage', type, key, location, numel)",
                wt_pickle_type_name(pid));
        return NULL;
    }
    pk_value *const *f = pid->u.seq.v;
    if (f[0]->type != PK_STR || strcmp(f[0]->u.str.s, "storage") != 0) {
        pk_fail(vm, "persistent id is not a torch 'storage' reference");
        return NULL;
    }
    if (f[1]->type != PK_GLOBAL) {
        pk_fail(vm, "storage type in a persistent id is of type %s, not a class", wt_pickle_type_name(f[1]));
        return NULL;
    }
    if (f[2]->type != PK_STR || f[2]->u.str.n == 0 || strlen(f[2]->u.str.s) != f[2]->u.str.n) {
        pk_fail(vm, "storage key in a persistent id is not a non-empty string");
        return NULL;
    }
    if (f[3]->type != PK_STR) {
        pk_fail(vm, "storage location in a persistent id is not a string");
        return NULL;
    }
    if (f[4]->type != PK_INT || f[4]->u.i < 0) {
        pk_fail(vm, "storage size in a persistent id is not a non-negative int");
        return NULL;
    }
    pk_value *s = pk_new(vm, PK_STORAGE);
    if (!s) return NULL;
    s->u.storage.cls = f[1];
    s->u.storage.key = f[2]->u.str.s;
    s->u.storage.numel = f[4]->u.i;
    return s;
}

/* ---- memo ---------------------------------------------------------------------------------------------- */

static int pk_memo_put(pk_vm *vm, uint64_t idx, pk_value *v)
{
    if (idx >= vm->memo_limit)
        return pk_fail(vm, "memo index %llu is implausibly large", (unsigned long long)idx);
    if (idx >= vm->memo_cap) {
        size_t nc = vm->memo_cap ? vm->memo_cap : 64;
        while (nc <= idx) nc *= 2;
        vm->memo = mc_realloc(vm->memo, nc * sizeof *vm->memo);
        memset(vm->memo + vm->memo_cap, 0, (nc - vm->memo_cap) * sizeof *vm->memo);
        vm->memo_cap = nc;
    }
    if (!vm->memo[idx]) vm->memo_count++;
    vm->memo[idx] = v;
    return 0;
}

static int pk_memo_get(pk_vm *vm, uint64_t idx)
{
    if (idx >= vm->memo_cap || !vm->memo[idx])
        return pk_fail(vm, "memo key %llu was never stored", (unsigned long long)idx);
    return pk_push(vm, vm->memo[idx]);
}

/* ---- numbers and text ---------------------------------------------------------------------------------- */

static pk_value *pk_new_int(pk_vm *vm, int64_t i)
{
    pk_value *v = pk_new(vm, PK_INT);
    if (v) v->u.i = i;
    return v;
}

/* LONG1/LONG4: little-endian two's complement of n bytes. */
static pk_value *pk_new_long(pk_vm *vm, const uint8_t *b, size_t n)
{
    if (n == 0) return pk_new_int(vm, 0);
    int neg = (b[n - 1] & 0x80) != 0;
    /* drop sign-extension bytes beyond 8 so that e.g. 2^63-1 written in 9 bytes still fits */
    size_t m = n;
    while (m > 8 && b[m - 1] == (neg ? 0xff : 0x00)) m--;
    if (m > 8 || (m == 8 && n > 8 && ((b[7] & 0x80) != 0) != neg)) return pk_new(vm, PK_BIGINT);
    uint64_t u = neg ? ~(uint64_t)0 : 0;
    for (size_t i = 0; i < m; i++) {
        u &= ~((uint64_t)0xff << (8 * i));
        u |= (uint64_t)b[i] << (8 * i);
    }
    int64_t s;
    memcpy(&s, &u, 8);
    return pk_new_int(vm, s);
}

/* INT / LONG text: decimal, optional sign; LONG adds a trailing 'L'. Too large for int64: an opaque bigint.
 */
static pk_value *pk_parse_int_text(pk_vm *vm, const char *s, size_t n, int is_long)
{
    if (is_long && n > 0 && s[n - 1] == 'L') n--;
    if (!is_long && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1')) {
        pk_value *v = pk_new(vm, PK_BOOL); /* protocol 0 spells False/True as I00 / I01 */
        if (v) v->u.i = s[1] == '1';
        return v;
    }
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == n) {
        pk_fail(vm, "bad integer text");
        return NULL;
    }
    uint64_t u = 0;
    int big = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            pk_fail(vm, "bad integer text");
            return NULL;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (u > (UINT64_MAX - d) / 10)
            big = 1;
        else
            u = u * 10 + d;
    }
    if (big || u > (uint64_t)INT64_MAX + (neg ? 1u : 0u)) return pk_new(vm, PK_BIGINT);
    int64_t v = neg ? (int64_t)(0 - u) : (int64_t)u;
    return pk_new_int(vm, v);
}

static pk_value *pk_parse_float_text(pk_vm *vm, const char *s, size_t n)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf) {
        pk_fail(vm, "bad float text");
        return NULL;
    }
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (end != buf + n) {
        pk_fail(vm, "bad float text");
        return NULL;
    }
    pk_value *v = pk_new(vm, PK_FLOAT);
    if (v) v->u.f = d;
    return v;
}

/* Checks UTF-8 structure (BINUNICODE must decode, as in Python). Surrogates are let through, as Python's
 * unpickler does with 'surrogatepass'. */
static int pk_utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (k > n - i - 1) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += k + 1;
    }
    return 1;
}

static size_t pk_utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int pk_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* UNICODE's argument is raw-unicode-escape: bytes are Latin-1 code points, except \uXXXX and \UXXXXXXXX. */
static pk_value *pk_decode_raw_unicode(pk_vm *vm, const char *s, size_t n)
{
    if (n > (SIZE_MAX - 1) / 4) return NULL;
    char *tmp = mc_malloc(4 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = (uint8_t)s[i];
        size_t digits = 0;
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == 'u' || s[i + 1] == 'U'))
            digits = s[i + 1] == 'u' ? 4 : 8;
        if (digits) {
            if (digits > n - i - 2) goto bad;
            cp = 0;
            for (size_t j = 0; j < digits; j++) {
                int h = pk_hexval(s[i + 2 + j]);
                if (h < 0) goto bad;
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10ffff) goto bad;
            i += 2 + digits;
        } else {
            i++;
        }
        o += pk_utf8_put(cp, tmp + o);
    }
    pk_value *v = pk_new_str(vm, PK_STR, tmp, o);
    free(tmp);
    if (!v) pk_oom(vm);
    return v;
bad:
    free(tmp);
    pk_fail(vm, "bad \\u escape in UNICODE text");
    return NULL;
}

/* STRING's argument is a quoted Python bytes repr; decoded like codecs.escape_decode for the common escapes,
 * unknown escapes kept verbatim. The result is treated as text (torch.load decodes with utf-8). */
static pk_value *pk_decode_string_repr(pk_vm *vm, const char *s, size_t n)
{
    if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0]) {
        pk_fail(vm, "STRING argument is not quoted");
        return NULL;
    }
    s++;
    n -= 2;
    char *tmp = mc_malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\' || i + 1 >= n) {
            tmp[o++] = s[i++];
            continue;
        }
        char c = s[i + 1];
        i += 2;
        switch (c) {
        case 'n':
            tmp[o++] = '\n';
            break;
        case 't':
            tmp[o++] = '\t';
            break;
        case 'r':
            tmp[o++] = '\r';
            break;
        case '\\':
            tmp[o++] = '\\';
            break;
        case '\'':
            tmp[o++] = '\'';
            break;
        case '"':
            tmp[o++] = '"';
            break;
        case 'x': {
            int h1 = i < n ? pk_hexval(s[i]) : -1, h2 = i + 1 < n ? pk_hexval(s[i + 1]) : -1;
            if (h1 < 0 || h2 < 0) {
                free(tmp);
                pk_fail(vm, "bad \\x escape in STRING text");
                return NULL;
            }
            tmp[o++] = (char)(h1 * 16 + h2);
            i += 2;
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                unsigned v = (unsigned)(c - '0');
                for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++)
                    v = v * 8 + (unsigned)(s[i++] - '0');
                tmp[o++] = (char)(v & 0xff);
            } else {
                tmp[o++] = '\\';
                tmp[o++] = c;
            }
        }
    }
    pk_value *v = pk_new_str(vm, PK_STR, tmp, o);
    free(tmp);
    if (!v) pk_oom(vm);
    return v;
}

/* ---- opcodes ------------------------------------------------------------------------------------------- */

enum {
    OP_MARK = '(',
    OP_STOP = '.',
    OP_POP = '0',
    OP_POP_MARK = '1',
    OP_DUP = '2',
    OP_FLOAT = 'F',
    OP_INT = 'I',
    OP_BININT = 'J',
    OP_BININT1 = 'K',
    OP_LONG = 'L',
    OP_BININT2 = 'M',
    OP_NONE = 'N',
    OP_PERSID = 'P',
    OP_BINPERSID = 'Q',
    OP_REDUCE = 'R',
    OP_STRING = 'S',
    OP_BINSTRING = 'T',
    OP_SHORT_BINSTRING = 'U',
    OP_UNICODE = 'V',
    OP_BINUNICODE = 'X',
    OP_APPEND = 'a',
    OP_BUILD = 'b',
    OP_GLOBAL = 'c',
    OP_DICT = 'd',
    OP_EMPTY_DICT = '}',
    OP_APPENDS = 'e',
    OP_GET = 'g',
    OP_BINGET = 'h',
    OP_INST = 'i',
    OP_LONG_BINGET = 'j',
    OP_LIST = 'l',
    OP_EMPTY_LIST = ']',
    OP_OBJ = 'o',
    OP_PUT = 'p',
    OP_BINPUT = 'q',
    OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's',
    OP_TUPLE = 't',
    OP_EMPTY_TUPLE = ')',
    OP_SETITEMS = 'u',
    OP_BINFLOAT = 'G',
    OP_PROTO = 0x80,
    OP_NEWOBJ = 0x81,
    OP_EXT1 = 0x82,
    OP_EXT2 = 0x83,
    OP_EXT4 = 0x84,
    OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89,
    OP_LONG1 = 0x8a,
    OP_LONG4 = 0x8b,
    OP_BINBYTES = 'B',
    OP_SHORT_BINBYTES = 'C',
    OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d,
    OP_BINBYTES8 = 0x8e,
    OP_EMPTY_SET = 0x8f,
    OP_ADDITEMS = 0x90,
    OP_FROZENSET = 0x91,
    OP_NEWOBJ_EX = 0x92,
    OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94,
    OP_FRAME = 0x95,
    OP_BYTEARRAY8 = 0x96,
    OP_NEXT_BUFFER = 0x97,
    OP_READONLY_BUFFER = 0x98,
};

/* Length-prefixed text or bytes (BINUNICODE, BINBYTES ...): the length is checked against what is left before
 * anything is allocated. */
static int pk_op_counted(pk_vm *vm, size_t lenbytes, pk_type t)
{
    uint64_t n;
    if (pk_read_uint(vm, lenbytes, &n)) return -1;
    if (n > vm->len - vm->pos)
        return pk_fail(vm, "pickle truncated: string of %llu bytes, %zu left", (unsigned long long)n,
                       vm->len - vm->pos);
    const uint8_t *s = pk_read(vm, (size_t)n);
    if (t == PK_STR && !pk_utf8_ok(s, (size_t)n)) return pk_fail(vm, "string is not valid UTF-8");
    return pk_push(vm, pk_new_str(vm, t, s, (size_t)n));
}

static int pk_op_setitems(pk_vm *vm, pk_value *const *items, size_t n)
{
    pk_value *d = pk_top(vm);
    if (!d) return -1;
    if (d->type == PK_OBJ) d = pk_obj_part(vm, d, 1);
    if (!d) return pk_oom(vm);
    if (d->type != PK_DICT)
        return pk_fail(vm, "SETITEM(S) on a value of type %s, not a dict", wt_pickle_type_name(d));
    return pk_dict_extend(vm, d, items, n);
}

static int pk_op_appends(pk_vm *vm, pk_value *const *items, size_t n, int set_only)
{
    pk_value *l = pk_top(vm);
    if (!l) return -1;
    if (l->type == PK_OBJ) {
        /* list or set subclass of a class we do not build: keep the items with the object */
        if (!(l = pk_obj_part(vm, l, 0))) return pk_oom(vm);
    } else if (set_only ? l->type != PK_SET : l->type != PK_LIST) {
        return pk_fail(vm, "%s on a value of type %s", set_only ? "ADDITEMS" : "APPEND(S)",
                       wt_pickle_type_name(l));
    }
    return pk_seq_extend(vm, l, items, n);
}

static int pk_step(pk_vm *vm, int *done)
{
    vm->op_pos = vm->pos;
    const uint8_t *opp = pk_read(vm, 1);
    if (!opp)
        return mc_fail(vm->err, "%s: pickle ends without a STOP opcode (at byte %zu)", vm->what, vm->pos);
    vm->op = *opp;
    uint64_t u;
    size_t first = 0, n = 0;
    const char *line;
    size_t ln;
    pk_value *a, *b, *c;

    switch (vm->op) {
    case OP_PROTO:
        if (pk_read_uint(vm, 1, &u)) return -1;
        if (u > 5) return pk_fail(vm, "pickle protocol %llu is newer than 5", (unsigned long long)u);
        return 0;
    case OP_FRAME:
        /* a framing hint for buffered readers; the whole pickle is in memory already */
        if (pk_read_uint(vm, 8, &u)) return -1;
        if (u > vm->len - vm->pos)
            return pk_fail(vm, "FRAME of %llu bytes runs past the end", (unsigned long long)u);
        return 0;
    case OP_STOP:
        if (!(a = pk_pop(vm))) return -1;
        vm->stack[vm->sn++] = a; /* leave it for the caller */
        *done = 1;
        return 0;

    case OP_MARK:
        if (vm->mn == vm->mcap) {
            vm->mcap = vm->mcap ? 2 * vm->mcap : 16;
            vm->marks = mc_realloc(vm->marks, vm->mcap * sizeof *vm->marks);
        }
        vm->marks[vm->mn++] = vm->sn;
        return 0;
    case OP_POP:
        if (pk_avail(vm) > 0) {
            vm->sn--;
            return 0;
        }
        return pk_pop_mark(vm, &first, &n);
    case OP_POP_MARK:
        return pk_pop_mark(vm, &first, &n);
    case OP_DUP:
        if (!(a = pk_top(vm))) return -1;
        return pk_push(vm, a);

    case OP_NONE:
        return pk_push(vm, vm->none);
    case OP_NEWTRUE:
        return pk_push(vm, vm->true_);
    case OP_NEWFALSE:
        return pk_push(vm, vm->false_);
    case OP_BININT:
        if (pk_read_uint(vm, 4, &u)) return -1;
        return pk_push(vm, pk_new_int(vm, (int32_t)(uint32_t)u));
    case OP_BININT1:
        if (pk_read_uint(vm, 1, &u)) return -1;
        return pk_push(vm, pk_new_int(vm, (int64_t)u));
    case OP_BININT2:
        if (pk_read_uint(vm, 2, &u)) return -1;
        return pk_push(vm, pk_new_int(vm, (int64_t)u));
    case OP_LONG1:
    case OP_LONG4: {
        if (pk_read_uint(vm, vm->op == OP_LONG1 ? 1 : 4, &u)) return -1;
        if (u > vm->len - vm->pos) return pk_fail(vm, "pickle truncated inside a LONG");
        const uint8_t *q = pk_read(vm, (size_t)u);
        if (!(a = pk_new_long(vm, q, (size_t)u))) return pk_oom(vm);
        return pk_push(vm, a);
    }
    case OP_INT:
    case OP_LONG:
        if (!(line = pk_read_line(vm, &ln))) return -1;
        if (!(a = pk_parse_int_text(vm, line, ln, vm->op == OP_LONG))) return -1;
        return pk_push(vm, a);
    case OP_FLOAT:
        if (!(line = pk_read_line(vm, &ln))) return -1;
        if (!(a = pk_parse_float_text(vm, line, ln))) return -1;
        return pk_push(vm, a);
    case OP_BINFLOAT: {
        const uint8_t *q = pk_read(vm, 8);
        if (!q) return -1;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = (bits << 8) | q[i]; /* big-endian, unlike everything else */
        if (!(a = pk_new(vm, PK_FLOAT))) return pk_oom(vm);
        memcpy(&a->u.f, &bits, 8);
        return pk_push(vm, a);
    }

    case OP_BINUNICODE:
        return pk_op_counted(vm, 4, PK_STR);
    case OP_SHORT_BINUNICODE:
        return pk_op_counted(vm, 1, PK_STR);
    case OP_BINUNICODE8:
        return pk_op_counted(vm, 8, PK_STR);
    case OP_BINSTRING:
        return pk_op_counted(vm, 4, PK_BYTES);
    case OP_SHORT_BINSTRING:
        return pk_op_counted(vm, 1, PK_BYTES);
    case OP_BINBYTES:
        return pk_op_counted(vm, 4, PK_BYTES);
    case OP_SHORT_BINBYTES:
        return pk_op_counted(vm, 1, PK_BYTES);
    case OP_BINBYTES8:
        return pk_op_counted(vm, 8, PK_BYTES);
    case OP_BYTEARRAY8:
        return pk_op_counted(vm, 8, PK_BYTES);
    case OP_STRING:
        if (!(line = pk_read_line(vm, &ln))) return -1;
        if (!(a = pk_decode_string_repr(vm, line, ln))) return -1;
        return pk_push(vm, a);
    case OP_UNICODE:
        if (!(line = pk_read_line(vm, &ln))) return -1;
        if (!(a = pk_decode_raw_unicode(vm, line, ln))) return -1;
        return pk_push(vm, a);

    case OP_EMPTY_TUPLE:
        return pk_push(vm, pk_new_seq(vm, PK_TUPLE, NULL, 0));
    case OP_TUPLE1:
    case OP_TUPLE2:
    case OP_TUPLE3:
        n = (size_t)(vm->op - OP_TUPLE1 + 1);
        if (pk_avail(vm) < n) return pk_fail(vm, "pickle stack underflow");
        vm->sn -= n;
        return pk_push(vm, pk_new_seq(vm, PK_TUPLE, pk_stack_at(vm, vm->sn), n));
    case OP_TUPLE:
        if (pk_pop_mark(vm, &first, &n)) return -1;
        return pk_push(vm, pk_new_seq(vm, PK_TUPLE, pk_stack_at(vm, first), n));
    case OP_EMPTY_LIST:
        return pk_push(vm, pk_new_seq(vm, PK_LIST, NULL, 0));
    case OP_LIST:
        if (pk_pop_mark(vm, &first, &n)) return -1;
        return pk_push(vm, pk_new_seq(vm, PK_LIST, pk_stack_at(vm, first), n));
    case OP_EMPTY_SET:
        return pk_push(vm, pk_new_seq(vm, PK_SET, NULL, 0));
    case OP_FROZENSET:
        if (pk_pop_mark(vm, &first, &n)) return -1;
        return pk_push(vm, pk_new_seq(vm, PK_SET, pk_stack_at(vm, first), n));
    case OP_EMPTY_DICT:
        return pk_push(vm, pk_new(vm, PK_DICT));
    case OP_DICT:
        if (pk_pop_mark(vm, &first, &n)) return -1;
        if (!(a = pk_new(vm, PK_DICT))) return pk_oom(vm);
        if (pk_dict_extend(vm, a, pk_stack_at(vm, first), n)) return -1;
        return pk_push(vm, a);

    case OP_APPEND:
        if (!(a = pk_pop(vm))) return -1;
        return pk_op_appends(vm, &a, 1, 0);
    case OP_APPENDS:
    case OP_ADDITEMS:
        if (pk_pop_mark(vm, &first, &n)) return -1;
        return pk_op_appends(vm, pk_stack_at(vm, first), n, vm->op == OP_ADDITEMS);
    case OP_SETITEM: {
        if (pk_avail(vm) < 3) return pk_fail(vm, "pickle stack underflow");
        pk_value *kv[2] = {vm->stack[vm->sn - 2], vm->stack[vm->sn - 1]};
        vm->sn -= 2;
        return pk_op_setitems(vm, kv, 2);
    }
    case OP_SETITEMS:
        if (pk_pop_mark(vm, &first, &n)) return -1;
        return pk_op_setitems(vm, pk_stack_at(vm, first), n);

    case OP_GLOBAL: {
        size_t mln;
        const char *mod = pk_read_line(vm, &mln);
        if (!mod || !(line = pk_read_line(vm, &ln))) return -1;
        if (!(a = pk_new_global(vm, mod, mln, line, ln))) return vm->err[0] ? -1 : pk_oom(vm);
        return pk_push(vm, a);
    }
    case OP_STACK_GLOBAL:
        if (!(b = pk_pop(vm)) || !(a = pk_pop(vm))) return -1;
        if (a->type != PK_STR || b->type != PK_STR) return pk_fail(vm, "STACK_GLOBAL on non-string names");
        if (!(c = pk_new_global(vm, a->u.str.s, a->u.str.n, b->u.str.s, b->u.str.n)))
            return vm->err[0] ? -1 : pk_oom(vm);
        return pk_push(vm, c);
    case OP_REDUCE:
        if (!(b = pk_pop(vm)) || !(a = pk_pop(vm))) return -1;
        if (!(c = pk_call(vm, a, b))) return vm->err[0] ? -1 : pk_oom(vm);
        return pk_push(vm, c);
    case OP_NEWOBJ:
        if (!(b = pk_pop(vm)) || !(a = pk_pop(vm))) return -1;
        if (!(c = pk_call(vm, a, b))) return vm->err[0] ? -1 : pk_oom(vm);
        return pk_push(vm, c);
    case OP_NEWOBJ_EX:
        /* cls, args, kwargs: keyword arguments never matter to anything we build */
        if (!pk_pop(vm) || !(b = pk_pop(vm)) || !(a = pk_pop(vm))) return -1;
        if (!(c = pk_call(vm, a, b))) return vm->err[0] ? -1 : pk_oom(vm);
        return pk_push(vm, c);
    case OP_INST: {
        size_t mln;
        const char *mod = pk_read_line(vm, &mln);
        if (!mod || !(line = pk_read_line(vm, &ln))) return -1;
        if (pk_pop_mark(vm, &first, &n)) return -1;
        pk_value *args = pk_new_seq(vm, PK_TUPLE, pk_stack_at(vm, first), n);
        if (!args) return pk_oom(vm);
        if (!(a = pk_new_global(vm, mod, mln, line, ln))) return vm->err[0] ? -1 : pk_oom(vm);
        if (!(c = pk_call(vm, a, args))) return vm->err[0] ? -1 : pk_oom(vm);
        return pk_push(vm, c);
    }
    case OP_OBJ: {
        if (pk_pop_mark(vm, &first, &n)) return -1;
        if (n == 0) return pk_fail(vm, "OBJ without a class");
        pk_value *args = pk_new_seq(vm, PK_TUPLE, pk_stack_at(vm, first + 1), n - 1);
        if (!args) return pk_oom(vm);
        if (!(c = pk_call(vm, vm->stack[first], args))) return vm->err[0] ? -1 : pk_oom(vm);
        return pk_push(vm, c);
    }
    case OP_BUILD:
        if (!(b = pk_pop(vm)) || !(a = pk_top(vm))) return -1;
        /* OrderedDict's _metadata, an object's __dict__: recorded, never applied */
        if (a->type == PK_DICT)
            a->u.dict.state = b;
        else if (a->type == PK_OBJ)
            a->u.obj.state = b;
        else if (a->type != PK_TENSOR)
            return pk_fail(vm, "BUILD on a value of type %s", wt_pickle_type_name(a));
        return 0;
    case OP_PERSID:
        if (!(line = pk_read_line(vm, &ln))) return -1;
        if (!(a = pk_new_str(vm, PK_STR, line, ln))) return pk_oom(vm);
        if (!(c = pk_persistent_load(vm, a))) return -1;
        return pk_push(vm, c);
    case OP_BINPERSID:
        if (!(a = pk_pop(vm))) return -1;
        if (!(c = pk_persistent_load(vm, a))) return -1;
        return pk_push(vm, c);

    case OP_PUT:
        if (!(line = pk_read_line(vm, &ln))) return -1;
        if (!(a = pk_parse_int_text(vm, line, ln, 0))) return -1;
        if (a->type != PK_INT || a->u.i < 0) return pk_fail(vm, "bad memo index");
        if (!(b = pk_top(vm))) return -1;
        return pk_memo_put(vm, (uint64_t)a->u.i, b);
    case OP_BINPUT:
    case OP_LONG_BINPUT:
        if (pk_read_uint(vm, vm->op == OP_BINPUT ? 1 : 4, &u)) return -1;
        if (!(b = pk_top(vm))) return -1;
        return pk_memo_put(vm, u, b);
    case OP_MEMOIZE:
        if (!(b = pk_top(vm))) return -1;
        return pk_memo_put(vm, vm->memo_count, b);
    case OP_GET:
        if (!(line = pk_read_line(vm, &ln))) return -1;
        if (!(a = pk_parse_int_text(vm, line, ln, 0))) return -1;
        if (a->type != PK_INT || a->u.i < 0) return pk_fail(vm, "bad memo index");
        return pk_memo_get(vm, (uint64_t)a->u.i);
    case OP_BINGET:
    case OP_LONG_BINGET:
        if (pk_read_uint(vm, vm->op == OP_BINGET ? 1 : 4, &u)) return -1;
        return pk_memo_get(vm, u);

    case OP_EXT1:
    case OP_EXT2:
    case OP_EXT4:
        return pk_fail(vm, "extension-registry opcodes (EXT1/2/4) are not supported");
    case OP_NEXT_BUFFER:
    case OP_READONLY_BUFFER:
        return pk_fail(vm, "protocol 5 out-of-band buffers are not supported");
    default:
        return pk_fail(vm, "unknown pickle opcode");
    }
}

int wt_pickle_load(wt_arena *a, const uint8_t *buf, size_t len, const char *what, pk_value **root,
                   pk_info *info, char *err)
{
    pk_vm vm;
    memset(&vm, 0, sizeof vm);
    vm.p = buf;
    vm.len = len;
    vm.a = a;
    vm.what = what;
    vm.err = err;
    vm.info = info;
    vm.memo_limit = len + 256 < PK_MEMO_HARD_CAP ? len + 256 : PK_MEMO_HARD_CAP;
    memset(info, 0, sizeof *info);
    err[0] = 0;
    *root = NULL;
    vm.none = pk_new(&vm, PK_NONE);
    vm.true_ = pk_new(&vm, PK_BOOL);
    vm.false_ = pk_new(&vm, PK_BOOL);
    if (!vm.none || !vm.true_ || !vm.false_) return pk_oom(&vm);
    vm.true_->u.i = 1;
    int done = 0, rc = 0;
    while (!done && rc == 0) rc = pk_step(&vm, &done);
    if (rc == 0) *root = vm.stack[vm.sn - 1];
    free(vm.stack);
    free(vm.marks);
    free(vm.memo);
    return rc;
}

/* ---- queries ------------------------------------------------------------------------------------------- */

pk_value *wt_pickle_dict_get(const pk_value *dict, const char *key)
{
    if (!dict || dict->type != PK_DICT) return NULL;
    size_t kn = strlen(key);
    for (size_t i = dict->u.dict.n; i-- > 0;) {
        const pk_value *k = dict->u.dict.kv[2 * i];
        if (k->type == PK_STR && k->u.str.n == kn && !memcmp(k->u.str.s, key, kn))
            return dict->u.dict.kv[2 * i + 1];
    }
    return NULL;
}

/* Depth-first over everything reachable, with an explicit stack (no recursion) and a per-walk stamp so shared
 * and cyclic values are visited once. */
const pk_value *wt_pickle_find_unknown(const pk_value *v, pk_info *info)
{
    uint32_t stamp = ++info->stamp;
    size_t n = 0, cap = 64;
    const pk_value **st = mc_malloc(cap * sizeof *st);
    const pk_value *found = NULL;
#define PK_WALK_PUSH(x)                                                                                      \
    do {                                                                                                     \
        const pk_value *x_ = (x);                                                                            \
        if (x_ && x_->seen != stamp) {                                                                       \
            ((pk_value *)x_)->seen = stamp;                                                                  \
            if (n == cap) {                                                                                  \
                cap *= 2;                                                                                    \
                st = mc_realloc(st, cap * sizeof *st);                                                       \
            }                                                                                                \
            st[n++] = x_;                                                                                    \
        }                                                                                                    \
    } while (0)
    PK_WALK_PUSH(v);
    while (n > 0 && !found) {
        const pk_value *x = st[--n];
        switch (x->type) {
        case PK_TUPLE:
        case PK_LIST:
        case PK_SET:
            for (size_t i = 0; i < x->u.seq.n; i++) PK_WALK_PUSH(x->u.seq.v[i]);
            break;
        case PK_DICT:
            for (size_t i = 0; i < 2 * x->u.dict.n; i++) PK_WALK_PUSH(x->u.dict.kv[i]);
            PK_WALK_PUSH(x->u.dict.state);
            break;
        case PK_GLOBAL:
            if (x->u.glob.kind == PK_G_UNKNOWN) found = x;
            break;
        case PK_OBJ:
            PK_WALK_PUSH(x->u.obj.root);
            PK_WALK_PUSH(x->u.obj.callee);
            PK_WALK_PUSH(x->u.obj.args);
            PK_WALK_PUSH(x->u.obj.state);
            PK_WALK_PUSH(x->u.obj.dict);
            PK_WALK_PUSH(x->u.obj.items);
            break;
        case PK_STORAGE:
            PK_WALK_PUSH(x->u.storage.cls);
            break;
        case PK_TENSOR:
            PK_WALK_PUSH(x->u.tensor.args);
            break;
        default:
            break;
        }
    }
#undef PK_WALK_PUSH
    free(st);
    return found;
}
