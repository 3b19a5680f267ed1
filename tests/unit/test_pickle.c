/* tests/unit/test_pickle.c: the weight readers' pickle VM and conversion helpers, below the level torch can
 * reach. Protects nn/weights_pickle.c (protocol 0 and 1 text opcodes torch never writes, memo sharing,
 * cycles, big ints, the unknown-global walk, error messages naming opcode and offset) and nn/weights.c (every
 * fp16 value against the compiler's _Float16 conversion, bf16, strided gather, quoting). Exit 0 passes. */
#include "nn/weights_impl.h"

#include <math.h>

#include "tests/unit/unit.h"

/* pickle.dumps({'a': [1, -2, 3.5, 'xé✨', None, True, (1, 2)], 'b': 2**70, 'c': b'\x00\xffq', 'd': -2**63,
 * 'e': 2**63 - 1}, protocol) for protocols 0 and 1, by CPython 3.11 */
static const char p0[] =
    "(dp0\x0aVa\x0ap1\x0a(lp2\x0aI1\x0a"
    "aI-2\x0a"
    "aF3.5\x0a"
    "aVx\xe9\x5cu2728\x0ap3\x0a"
    "aNaI01\x0a"
    "a(I1\x0aI2\x0atp4\x0a"
    "asVb\x0ap5\x0aL1180591620717411303424L\x0asVc\x0ap6\x0a"
    "c_codecs\x0a"
    "encode\x0ap7\x0a(V\x5cu0000\xffq\x0ap8\x0aVlatin1\x0ap9\x0atp10\x0aRp11\x0asVd\x0ap12\x0aL-"
    "9223372036854775808L\x0asVe\x0ap13\x0aL9223372036854775807L\x0as.";
static const char p1[] =
    "}q\x00(X\x01\x00\x00\x00"
    "aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@"
    "\x0c\x00\x00\x00\x00\x00\x00X\x06\x00\x00\x00x\xc3\xa9\xe2\x9c\xa8q\x03NI01\x0a(K\x01K\x02tq\x04"
    "eX\x01\x00\x00\x00"
    "bq\x05L1180591620717411303424L\x0aX\x01\x00\x00\x00"
    "cq\x06"
    "c_codecs\x0a"
    "encode\x0aq\x07("
    "X\x04\x00\x00\x00\x00\xc3\xbfqq\x08X\x06\x00\x00\x00latin1q\x09tq\x0aRq\x0bX\x01\x00\x00\x00"
    "dq\x0cL-9223372036854775808L\x0aX\x01\x00\x00\x00"
    "eq\x0dL9223372036854775807L\x0au.";
/* l = []; l.append(l); sh = [7]; pickle.dumps({'cyc': l, 'sh': [sh, sh]}, 2) */
static const char p_cycle[] = "\x80\x02}q\x00(X\x03\x00\x00\x00"
                              "cycq\x01]q\x02h\x02"
                              "aX\x02\x00\x00\x00shq\x03]q\x04(]q\x05K\x07"
                              "ah\x05"
                              "eu.";
/* {'x': [1, {'y': <object reducing to os.system('x')>}]} at protocol 0 */
static const char p_evil[] = "(dp0\x0aVx\x0ap1\x0a(lp2\x0aI1\x0a"
                             "a(dp3\x0aVy\x0ap4\x0a"
                             "cposix\x0asystem\x0ap5\x0a(g1\x0atp6\x0aRp7\x0asas.";

static pk_value *load(wt_arena *a, const char *p, size_t n, pk_info *info, char *err)
{
    pk_value *root = NULL;
    if (wt_pickle_load(a, (const uint8_t *)p, n, "t.pkl", &root, info, err) != 0) return NULL;
    return root;
}

static int is_str(const pk_value *v, const char *s)
{
    return v && v->type == PK_STR && v->u.str.n == strlen(s) && !memcmp(v->u.str.s, s, v->u.str.n);
}

static void test_plain_values(const char *label, const char *p, size_t n)
{
    wt_arena a;
    wt_arena_init(&a, 1 << 24);
    pk_info info;
    char err[MC_ERR_LEN];
    pk_value *root = load(&a, p, n, &info, err);
    CHECK(root && root->type == PK_DICT && root->u.dict.n == 5, "%s: root is a 5-entry dict (%s)", label,
          root ? "" : err);
    if (root) {
        pk_value *l = wt_pickle_dict_get(root, "a");
        CHECK(l && l->type == PK_LIST && l->u.seq.n == 7, "%s: 'a' is a 7-item list", label);
        if (l && l->u.seq.n == 7) {
            pk_value **v = l->u.seq.v;
            CHECK(v[0]->type == PK_INT && v[0]->u.i == 1, "%s: 1", label);
            CHECK(v[1]->type == PK_INT && v[1]->u.i == -2, "%s: -2", label);
            CHECK(v[2]->type == PK_FLOAT && v[2]->u.f == 3.5, "%s: 3.5", label);
            CHECK(is_str(v[3], "x\xc3\xa9\xe2\x9c\xa8"), "%s: unicode text decoded to UTF-8", label);
            CHECK(v[4]->type == PK_NONE, "%s: None", label);
            CHECK(v[5]->type == PK_BOOL && v[5]->u.i == 1, "%s: True", label);
            CHECK(v[6]->type == PK_TUPLE && v[6]->u.seq.n == 2 && v[6]->u.seq.v[1]->u.i == 2, "%s: (1, 2)",
                  label);
        }
        pk_value *b = wt_pickle_dict_get(root, "b"), *c = wt_pickle_dict_get(root, "c");
        pk_value *d = wt_pickle_dict_get(root, "d"), *e = wt_pickle_dict_get(root, "e");
        CHECK(b && b->type == PK_BIGINT, "%s: 2**70 is an opaque big int", label);
        CHECK(c && c->type == PK_BYTES, "%s: _codecs.encode gives bytes", label);
        CHECK(d && d->type == PK_INT && d->u.i == INT64_MIN, "%s: -2**63 fits", label);
        CHECK(e && e->type == PK_INT && e->u.i == INT64_MAX, "%s: 2**63-1 fits", label);
        CHECK(info.first_unknown == NULL, "%s: no unknown global", label);
    }
    wt_arena_free(&a);
}

static void test_cycle_and_sharing(void)
{
    wt_arena a;
    wt_arena_init(&a, 1 << 24);
    pk_info info;
    char err[MC_ERR_LEN];
    pk_value *root = load(&a, p_cycle, sizeof p_cycle - 1, &info, err);
    CHECK(root != NULL, "cycle pickle loads (%s)", root ? "" : err);
    if (root) {
        pk_value *l = wt_pickle_dict_get(root, "cyc"), *sh = wt_pickle_dict_get(root, "sh");
        CHECK(l && l->type == PK_LIST && l->u.seq.n == 1 && l->u.seq.v[0] == l, "a list holding itself");
        CHECK(sh && sh->u.seq.n == 2 && sh->u.seq.v[0] == sh->u.seq.v[1], "memo shares one object");
        CHECK(wt_pickle_find_unknown(root, &info) == NULL, "the walk ends on a cycle");
    }
    wt_arena_free(&a);
}

static void test_unknown_global(void)
{
    wt_arena a;
    wt_arena_init(&a, 1 << 24);
    pk_info info;
    char err[MC_ERR_LEN];
    pk_value *root = load(&a, p_evil, sizeof p_evil - 1, &info, err);
    CHECK(root != NULL, "pickle naming os.system loads as data (%s)", root ? "" : err);
    if (root) {
        const pk_value *u = wt_pickle_find_unknown(root, &info);
        CHECK(u && !strcmp(u->u.glob.module, "posix") && !strcmp(u->u.glob.name, "system"),
              "walk finds posix.system nested in a list and a dict");
        CHECK(info.first_unknown == u, "the VM recorded it too");
        pk_value *x = wt_pickle_dict_get(root, "x");
        CHECK(wt_pickle_find_unknown(x->u.seq.v[0], &info) == NULL, "not reachable from the int beside it");
    }
    wt_arena_free(&a);
}

static void expect_error(const char *p, size_t n, const char *frag)
{
    wt_arena a;
    wt_arena_init(&a, 1 << 24);
    pk_info info;
    char err[MC_ERR_LEN] = "";
    pk_value *root = load(&a, p, n, &info, err);
    CHECK(!root && strstr(err, frag) && strstr(err, "t.pkl") && !strchr(err, '\n'), "error '%s' in '%s'",
          frag, err);
    wt_arena_free(&a);
}

static void test_errors(void)
{
    expect_error("\x80\x02\xff", 3, "opcode 0xff at byte 2");
    expect_error("", 0, "without a STOP");
    expect_error("\x80\x02.", 3, "stack underflow");
    expect_error("\x80\x02K\x01(\x85.", 7, "stack underflow"); /* TUPLE1 cannot reach below a MARK */
    expect_error("I12x\n.", 6, "bad integer text");
    expect_error("F1.5e\n.", 7, "bad float text");
    expect_error("S'abc\n.", 7, "not quoted");
    expect_error("Vab\\u12\n.", 9, "\\u escape");
    expect_error("\x80\x02K\x01K\x02\x85R.", 9, "cannot call a value of type int");
    expect_error("\x80\x02}N\x85\x81.", 6, "cannot call a value of type dict");
    expect_error("\x80\x02"
                 "cfoo\nbar\nK\x01R.",
                 15, "arguments of foo.bar are of type int");
    expect_error("\x80\x02K\x01K\x02"
                 "b.",
                 8, "BUILD on a value of type int");
    expect_error("\x80\x02g99\n.", 7, "memo key 99");
    /* STACK_GLOBAL takes any strings: a newline in a global name must not reach a one-line message */
    expect_error("\x80\x04\x8c\x03"
                 "a\nb\x8c\x01"
                 "c\x93.",
                 12, "control characters");
    /* a memory cap turns a pickle that builds too much into an error, not an abort */
    static char many[20000];
    many[0] = '\x80';
    many[1] = '\x02';
    many[2] = '(';
    for (size_t i = 3; i < sizeof many - 1; i++) many[i] = ']';
    many[sizeof many - 1] = 'l';
    wt_arena a;
    wt_arena_init(&a, 64 << 10);
    pk_info info;
    char err[MC_ERR_LEN] = "";
    pk_value *root = NULL;
    int rc = wt_pickle_load(&a, (const uint8_t *)many, sizeof many, "t.pkl", &root, &info, err);
    CHECK(rc == -1 && strstr(err, "refusing"), "arena cap reached: '%s'", err);
    wt_arena_free(&a);
}

static void test_text_forms(void)
{
    /* STRING (quoted repr), LONG1 edges, INST, OBJ, DUP/POP, PUT/GET of protocol 0 */
    static const char p[] =
        "(dp0\nS'k\\x41\\n\\'q'\np1\n(I5\nI6\nlp2\nsS'obj'\n(cmod\nCls\nI1\nosS'inst'\n(I2\n"
        "imod\nCls\nsS'dup'\n(I7\n2I8\n0ts.";
    wt_arena a;
    wt_arena_init(&a, 1 << 24);
    pk_info info;
    char err[MC_ERR_LEN];
    pk_value *root = load(&a, p, sizeof p - 1, &info, err);
    CHECK(root && root->type == PK_DICT, "protocol 0 forms load (%s)", root ? "" : err);
    if (root) {
        pk_value *l = wt_pickle_dict_get(root, "kA\n'q");
        CHECK(l && l->type == PK_LIST && l->u.seq.n == 2, "STRING escapes decoded");
        pk_value *o = wt_pickle_dict_get(root, "obj"), *i = wt_pickle_dict_get(root, "inst");
        CHECK(o && o->type == PK_OBJ && !strcmp(o->u.obj.root->u.glob.name, "Cls"),
              "OBJ gives an opaque instance");
        CHECK(i && i->type == PK_OBJ && !strcmp(i->u.obj.root->u.glob.module, "mod"),
              "INST gives an opaque instance");
        pk_value *d = wt_pickle_dict_get(root, "dup");
        CHECK(d && d->type == PK_TUPLE && d->u.seq.n == 2 && d->u.seq.v[0]->u.i == 7 &&
                  d->u.seq.v[1]->u.i == 7,
              "DUP then POP");
        CHECK(info.first_unknown && !strcmp(info.first_unknown->u.glob.module, "mod"), "mod.Cls is unknown");
    }
    wt_arena_free(&a);

    /* LONG1: 2**63-1 (8 bytes), -2**63 (8 bytes), 2**63 (9 bytes: too big), -1 padded to 10 bytes (fits) */
    static const char l1[] =
        "\x80\x02(\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80"
        "\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00\x8a\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff"
        "\xff\x8a\x00t.";
    wt_arena_init(&a, 1 << 24);
    root = load(&a, l1, sizeof l1 - 1, &info, err);
    CHECK(root && root->type == PK_TUPLE && root->u.seq.n == 5, "LONG1 tuple loads (%s)", root ? "" : err);
    if (root && root->u.seq.n == 5) {
        pk_value **v = root->u.seq.v;
        CHECK(v[0]->type == PK_INT && v[0]->u.i == INT64_MAX, "LONG1 2**63-1");
        CHECK(v[1]->type == PK_INT && v[1]->u.i == INT64_MIN, "LONG1 -2**63");
        CHECK(v[2]->type == PK_BIGINT, "LONG1 2**63 is big");
        CHECK(v[3]->type == PK_INT && v[3]->u.i == -1, "LONG1 -1 with sign padding");
        CHECK(v[4]->type == PK_INT && v[4]->u.i == 0, "LONG1 of zero bytes is 0");
    }
    wt_arena_free(&a);
}

static void test_f16(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t hb = (uint16_t)h;
        _Float16 x;
        memcpy(&x, &hb, 2);
        float ref = (float)x, got = wt_f16_to_f32(hb);
        uint32_t rb, gb;
        memcpy(&rb, &ref, 4);
        memcpy(&gb, &got, 4);
        if (isnan(ref) ? !isnan(got) : rb != gb) bad++;
    }
    CHECK(bad == 0, "all 65536 halves convert like _Float16 (%d differ)", bad);
    CHECK(wt_bf16_to_f32(0x3f80) == 1.0f && wt_bf16_to_f32(0xc040) == -3.0f, "bf16");
}

static void test_gather_and_quote(void)
{
    float src[12], dst[12];
    for (int i = 0; i < 12; i++) src[i] = (float)i;
    /* the transpose of a 3x4 row-major matrix, starting one element in: a (4,3) view with strides (1,4) */
    int64_t shape[2] = {3, 3}, stride[2] = {1, 4};
    wt_gather((const uint8_t *)src, NN_DT_F32, 1, 2, shape, stride, dst);
    const float want[9] = {1, 5, 9, 2, 6, 10, 3, 7, 11};
    CHECK(!memcmp(dst, want, sizeof want), "strided gather");
    char q[16];
    wt_quote("a\nb\\c", 5, q, sizeof q);
    CHECK(!strcmp(q, "a\\x0ab\\x5cc"), "quote escapes controls: %s", q);
    wt_quote("abcdefghijklmnopqrstuvwxyz", 26, q, sizeof q);
    CHECK(strlen(q) < sizeof q && !strcmp(q + strlen(q) - 3, "..."), "quote truncates: %s", q);
}

/* fuzz/regress/pickle/empty_mark_at_start.pkl (found by fuzz/fuzz_pickle.c): a MARK and an empty APPENDS before
 * anything was ever pushed indexed a null stack (undefined behaviour, reported by UBSan in make sanitize). It
 * must run to a result or an error, and under the sanitizers without a report. */
static void test_fuzz_regressions(void)
{
    static const uint8_t p[] = {0x80, 0x02, 0x28, 0x65, 0x62, 0x75, 0x69, 0x6c, 0x64, 0x5f, 0x74, 0x65, 0x6e, 0x74, 0x71, 0x01, 0x63, 0x74, 0x71, 0x03, 0x63, 0x74, 0x6f, 0x72, 0x63, 0x68, 0x01, 0x86, 0x71, 0x22, 0x89, 0x68, 0x32, 0x31, 0x52, 0x71, 0x32, 0x52, 0x71, 0x23, 0x23, 0x76, 0x71, 0x24, 0x52, 0x71, 0x25, 0x75, 0x2e};
    wt_arena a;
    wt_arena_init(&a, 1 << 20);
    pk_value *root = NULL;
    pk_info info = {0};
    char err[MC_ERR_LEN] = "";
    int rc = wt_pickle_load(&a, p, sizeof p, "regress.pkl", &root, &info, err);
    CHECK(rc == 0 || err[0], "fuzz regression: an error says why (rc %d)", rc);
    wt_arena_free(&a);
}

int main(void)
{
    test_plain_values("protocol 0", p0, sizeof p0 - 1);
    test_plain_values("protocol 1", p1, sizeof p1 - 1);
    test_cycle_and_sharing();
    test_unknown_global();
    test_errors();
    test_text_forms();
    test_f16();
    test_gather_and_quote();
    test_fuzz_regressions();
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
