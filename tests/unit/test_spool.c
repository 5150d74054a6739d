/*
 * test_spool.c — Check suite "spool" for gateway/spool.c.
 *
 *   helpers        a temp directory per test (removed at the end), a collector
 *                  that copies what recovery hands over (events, damage
 *                  reports), segment files listed/read/rewritten by hand
 *   codec          CRC-32C against known values and a bitwise reference; the
 *                  decoder on every prefix of real records and on a table of
 *                  damaged ones
 *   life cycle     round trip, done marks (twice, unknown, before the
 *                  commit), a crash (a child _exits without closing),
 *                  done marks in a newer segment, rotation and deletion,
 *                  sequence numbers after everything was deleted, bytes
 *   damage         a cut at every byte of the last record, a flipped bit in
 *                  every byte of a middle record, garbage between records,
 *                  a repeated record
 *   refusals       the lock, an unusable directory, the limits
 *   failure        RLIMIT_FSIZE makes write(2) fail part way (EFBIG), the way
 *                  a full disk does: nothing is lost, nothing half-written stays
 *   throughput     events of 600 bytes in commits of 100 (tmpfs and the test's
 *                  TMPDIR)
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "tmpdir.h"

/* ---- helpers --------------------------------------------------------------------- */



static void make_tmpdir(char out[256], const char *root)
{
    if (!root) {
        root = getenv("TMPDIR");
        if (!root || !*root)
            root = "/tmp";
    }
    snprintf(out, 256, "%s/fx_spool_test.XXXXXX", root);
    ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp %s: %s", out, strerror(errno));
}


typedef struct got_event {
    uint64_t seq, created_ms;
    char *topic, *key, *value;
    size_t topic_len, key_len, value_len;
} got_event;

typedef struct got_damage {
    char file[64];
    uint64_t off, len;
    char why[160];
} got_damage;

typedef struct collector {
    got_event ev[64];
    size_t nev;
    got_damage dmg[16];
    size_t ndmg;
    uint64_t last_seq;
} collector;

static char *dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    ck_assert(d != NULL);
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

static void on_undone(void *arg, const fx_spool_event *ev)
{
    collector *c = arg;
    ck_assert_msg(ev->seq > c->last_seq, "events out of order: %llu after %llu", (unsigned long long)ev->seq,
                  (unsigned long long)c->last_seq);
    c->last_seq = ev->seq;
    if (c->nev == sizeof(c->ev) / sizeof(c->ev[0]))
        return; /* the count-only tests do not look at more */
    got_event *g = &c->ev[c->nev++];
    g->seq = ev->seq;
    g->created_ms = ev->created_ms;
    g->topic = dup_bytes(ev->topic, ev->topic_len);
    g->topic_len = ev->topic_len;
    g->key = dup_bytes(ev->key, ev->key_len);
    g->key_len = ev->key_len;
    g->value = dup_bytes(ev->value, ev->value_len);
    g->value_len = ev->value_len;
}

static void on_damage(void *arg, const char *file, uint64_t off, uint64_t len, const char *why)
{
    collector *c = arg;
    ck_assert(c->ndmg < sizeof(c->dmg) / sizeof(c->dmg[0]));
    got_damage *d = &c->dmg[c->ndmg++];
    snprintf(d->file, sizeof(d->file), "%s", file);
    d->off = off;
    d->len = len;
    snprintf(d->why, sizeof(d->why), "%s", why);
}

static void collector_free(collector *c)
{
    for (size_t i = 0; i < c->nev; i++) {
        free(c->ev[i].topic);
        free(c->ev[i].key);
        free(c->ev[i].value);
    }
    memset(c, 0, sizeof(*c));
}

static fx_spool *open_ok(const char *dir, collector *c)
{
    char err[512] = "";
    collector_free(c);
    fx_spool *s = fx_spool_open(dir, on_undone, on_damage, c, err, sizeof(err));
    ck_assert_msg(s != NULL, "open %s: %s", dir, err);
    return s;
}

static fx_spool_event mkev(const char *topic, const char *key, const char *value, uint64_t created)
{
    fx_spool_event ev = {.created_ms = created, .topic = topic, .topic_len = strlen(topic), .key = key,
                         .key_len = key ? strlen(key) : 0, .value = value, .value_len = value ? strlen(value) : 0};
    return ev;
}

static uint64_t append_ok(fx_spool *s, fx_spool_event ev)
{
    char err[512] = "";
    ck_assert_msg(fx_spool_append(s, &ev, err, sizeof(err)) == 0, "append: %s", err);
    return ev.seq;
}

static void commit_ok(fx_spool *s)
{
    char err[512] = "";
    ck_assert_msg(fx_spool_commit(s, err, sizeof(err)) == 0, "commit: %s", err);
}

/* Appends "t"/"k<i>"/"value <i>..." events 1..n of about vlen bytes and commits. */
static void append_small(fx_spool *s, int from, int to, size_t vlen)
{
    char key[32], value[1024];
    for (int i = from; i <= to; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        memset(value, 'a' + i % 26, sizeof(value));
        int n = snprintf(value, sizeof(value), "value %d ", i);
        value[n] = '.';
        value[vlen] = '\0';
        append_ok(s, mkev("t", key, value, 1000 + (uint64_t)i));
    }
    commit_ok(s);
}

typedef struct segfile {
    char name[256];
    uint64_t size;
} segfile;

static int cmp_segfile(const void *a, const void *b)
{
    return strcmp(((const segfile *)a)->name, ((const segfile *)b)->name);
}

/* The seg-*.log files in dir, by name. */
static size_t list_segs(const char *dir, segfile *out, size_t max)
{
    DIR *d = opendir(dir);
    ck_assert(d != NULL);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "seg-", 4) != 0 || strlen(e->d_name) >= 64)
            continue;
        ck_assert(n < max);
        snprintf(out[n].name, sizeof(out[n].name), "%s", e->d_name);
        char p[512];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        ck_assert(stat(p, &st) == 0);
        out[n++].size = (uint64_t)st.st_size;
    }
    closedir(d);
    qsort(out, n, sizeof(segfile), cmp_segfile);
    return n;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert(b != NULL);
    ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_all(const char *path, const void *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert(fwrite(b, 1, len, f) == len);
    ck_assert(fclose(f) == 0);
}

/* The one non-empty segment of dir, read whole. */
static unsigned char *the_segment(const char *dir, char name[64], size_t *len)
{
    segfile f[8];
    size_t n = list_segs(dir, f, 8), hit = 0;
    for (size_t i = 0; i < n; i++)
        if (f[i].size) {
            hit++;
            snprintf(name, 64, "%.63s", f[i].name);
        }
    ck_assert_int_eq(hit, 1);
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return read_all(p, len);
}

/* A directory holding one segment with events 1..3 (values of about 40 bytes); the
 * segment's bytes and each record's offset come back. */
static unsigned char *three_events(const char *dir, char name[64], size_t *len, size_t off[4])
{
    collector c = {0};
    fx_spool *s = open_ok(dir, &c);
    append_small(s, 1, 3, 40);
    fx_spool_close(s);
    collector_free(&c);
    unsigned char *b = the_segment(dir, name, len);
    off[0] = 0;
    for (int i = 0; i < 3; i++) {
        long n = fx_spool_decode(b + off[i], *len - off[i], NULL, NULL, NULL, NULL, NULL);
        ck_assert(n > 0);
        off[i + 1] = off[i] + (size_t)n;
    }
    ck_assert_uint_eq(off[3], *len);
    return b;
}

/* dir emptied, then holding name = b[0..len). */
static void only_segment(const char *dir, const char *name, const void *b, size_t len)
{
    char p[512];
    ck_assert(fx_test_clear_dir(dir) == 0);
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    write_all(p, b, len);
}

static void assert_event(const got_event *g, uint64_t seq, const char *topic, const char *key, const char *value)
{
    ck_assert_uint_eq(g->seq, seq);
    ck_assert_str_eq(g->topic, topic);
    ck_assert_str_eq(g->key, key ? key : "");
    ck_assert_str_eq(g->value, value ? value : "");
}

static void assert_seqs(const collector *c, const uint64_t *want, size_t n)
{
    ck_assert_msg(c->nev == n, "%zu events handed over, want %zu", c->nev, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(c->ev[i].seq, want[i]);
}

/* ---- codec ------------------------------------------------------------------------- */

static uint32_t crc_bitwise(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (c & 1 ? 0x82f63b78u : 0);
    }
    return ~c;
}

START_TEST(test_crc32c)
{
    ck_assert_uint_eq(fx_spool_crc32c(0, "123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(fx_spool_crc32c_portable(0, "123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(fx_spool_crc32c(0, "", 0), 0);
    unsigned char zeros[32] = {0};
    ck_assert_uint_eq(fx_spool_crc32c(0, zeros, 32), 0x8a9136aau); /* RFC 3720 B.4 */
    unsigned char buf[600];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    for (size_t start = 0; start < 9; start++)
        for (size_t n = 0; n + start <= 300; n += 7) {
            uint32_t want = crc_bitwise(buf + start, n);
            ck_assert_uint_eq(fx_spool_crc32c(0, buf + start, n), want);
            ck_assert_uint_eq(fx_spool_crc32c_portable(0, buf + start, n), want);
            /* continuing a crc is the crc of the concatenation */
            ck_assert_uint_eq(fx_spool_crc32c(fx_spool_crc32c(0, buf + start, n / 3), buf + start + n / 3,
                                              n - n / 3),
                              want);
        }
}
END_TEST

typedef struct damage_case {
    const char *name;
    size_t at;          /* byte to overwrite */
    int width;          /* 1, 2 or 4 bytes, little-endian */
    uint32_t value;
    const char *why;    /* what decode must say */
} damage_case;

/* offsets into an event record: header, then created_ms(8) topic_len(2) reason_len(2) key_len(4) value_len(4) */
static const damage_case damage_cases[] = {
    {"magic", 0, 1, 0x00, "bad magic"},
    {"magic last byte", 3, 1, 'Z', "bad magic"},
    {"type 0", 4, 1, 0, "unknown record type"},
    {"type 9", 4, 1, 9, "unknown record type"},
    {"version", 5, 1, 2, "unknown record version"},
    {"reserved", 6, 2, 1, "bad header (reserved bytes not zero)"},
    {"length below the fixed part", 8, 4, 19, "bad length"},
    {"length above every limit", 8, 4, 0xffffffffu, "bad length"},
    {"length one short", 8, 4, 0, "bad length (the field lengths do not add up)"}, /* value set below */
    {"topic length 0", 24 + 8, 2, 0, "bad topic length"},
    {"topic length 250", 24 + 8, 2, 250, "bad topic length"},
    {"an event with a reason", 24 + 10, 2, 1, "bad reason length (an event has none)"},
    {"key too long", 24 + 12, 4, FX_SPOOL_MAX_KEY + 1, "bad key length"},
    {"value too long", 24 + 16, 4, FX_SPOOL_MAX_VALUE + 1, "bad value length"},
    {"value length off by one", 24 + 16, 4, 0, "bad length (the field lengths do not add up)"}, /* below */
    {"checksum", 20, 1, 0, "bad checksum"}, /* xor below */
    {"sequence number", 12, 1, 0, "bad checksum"},
    {"created_ms", 24, 1, 0, "bad checksum"},
    {"a value byte", 60, 1, 0, "bad checksum"},
};

static void put_le(unsigned char *p, int width, uint32_t v)
{
    for (int i = 0; i < width; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

START_TEST(test_decode_table)
{
    char dir[256], name[64];
    size_t len, off[4];
    make_tmpdir(dir, NULL);
    unsigned char *seg = three_events(dir, name, &len, off);
    size_t n = off[1];
    const damage_case *dc = &damage_cases[_i];
    unsigned char *r = malloc(n);
    ck_assert(r != NULL);
    memcpy(r, seg, n);
    uint32_t v = dc->value;
    if (!strcmp(dc->name, "length one short"))
        v = (uint32_t)(n - 24 - 1);
    if (!strcmp(dc->name, "value length off by one"))
        v = (uint32_t)(r[24 + 16] + 1);
    if (dc->width == 1 && !strcmp(dc->why, "bad checksum"))
        v = r[dc->at] ^ 0x10;
    put_le(r + dc->at, dc->width, v);
    const char *why = NULL;
    int type = 0;
    fx_spool_event ev;
    long got = fx_spool_decode(r, n, &type, &ev, NULL, NULL, &why);
    ck_assert_msg(got == -1, "%s: decode gave %ld", dc->name, got);
    ck_assert_msg(why && !strcmp(why, dc->why), "%s: why '%s', want '%s'", dc->name, why ? why : "(null)", dc->why);
    free(r);
    free(seg);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_decode_records)
{
    char dir[256], name[64];
    collector c = {0};
    make_tmpdir(dir, NULL);
    fx_spool *s = open_ok(dir, &c);
    uint64_t a = append_ok(s, mkev("orders", "42", "{\"x\":1}", 1700000000123u));
    uint64_t b = append_ok(s, mkev("orders", NULL, "", 5));
    commit_ok(s);
    fx_spool_done(s, b);
    fx_spool_done(s, a);
    commit_ok(s);
    size_t len;
    unsigned char *seg = the_segment(dir, name, &len);

    /* each record sits in a buffer of its exact size: ASan sees any read past it */
    size_t at = 0;
    int types[3];
    for (int i = 0; i < 3; i++) {
        long n = fx_spool_decode(seg + at, len - at, NULL, NULL, NULL, NULL, NULL);
        ck_assert(n > 0);
        unsigned char *r = malloc((size_t)n);
        memcpy(r, seg + at, (size_t)n);
        for (size_t k = 0; k < (size_t)n; k++) {
            const char *why = "x";
            ck_assert_msg(fx_spool_decode(r, k, NULL, NULL, NULL, NULL, &why) == 0,
                          "record %d: prefix of %zu bytes is not 'need more' (%s)", i, k, why);
        }
        fx_spool_event ev;
        const unsigned char *seqs = NULL;
        size_t nseqs = 0;
        ck_assert_int_eq(fx_spool_decode(r, (size_t)n, &types[i], &ev, &seqs, &nseqs, NULL), n);
        if (i == 0) {
            ck_assert_int_eq(types[i], FX_SPOOL_REC_EVENT);
            ck_assert_uint_eq(ev.seq, a);
            ck_assert_uint_eq(ev.created_ms, 1700000000123u);
            ck_assert(ev.topic_len == 6 && !memcmp(ev.topic, "orders", 6));
            ck_assert(ev.key_len == 2 && !memcmp(ev.key, "42", 2));
            ck_assert(ev.value_len == 7 && !memcmp(ev.value, "{\"x\":1}", 7));
            ck_assert_int_eq(n, 24 + 20 + 6 + 2 + 7);
        } else if (i == 1) {
            ck_assert_int_eq(types[i], FX_SPOOL_REC_EVENT);
            ck_assert_uint_eq(ev.seq, b);
            ck_assert(ev.key_len == 0 && ev.value_len == 0);
        } else {
            ck_assert_int_eq(types[i], FX_SPOOL_REC_DONE);
            ck_assert_uint_eq(nseqs, 2);
            ck_assert_int_eq(n, 24 + 16);
            /* little-endian u64s in the order they were marked */
            ck_assert_uint_eq(seqs[0], b);
            ck_assert_uint_eq(seqs[8], a);
            for (int k = 1; k < 8; k++)
                ck_assert(seqs[k] == 0 && seqs[8 + k] == 0);
        }
        /* the layout spool.h documents: magic, type, version, reserved, length, seq, crc */
        ck_assert(r[0] == 0xff && r[1] == 'F' && r[2] == 'X' && r[3] == 'S');
        ck_assert_int_eq(r[4], types[i]);
        ck_assert_int_eq(r[5], 1);
        ck_assert_uint_eq((uint32_t)r[8] | (uint32_t)r[9] << 8 | (uint32_t)r[10] << 16, (size_t)n - 24);
        ck_assert_uint_eq(r[12], i == 0 ? a : i == 1 ? b : 0);
        uint32_t crc = fx_spool_crc32c(fx_spool_crc32c(0, r, 20), r + 24, (size_t)n - 24);
        ck_assert_uint_eq((uint32_t)r[20] | (uint32_t)r[21] << 8 | (uint32_t)r[22] << 16 | (uint32_t)r[23] << 24,
                          crc);
        /* a done-marks record is not a dead letter */
        const char *why = NULL;
        ck_assert_int_eq(fx_spool_decode_dead(r, (size_t)n, NULL, NULL, NULL, &why), -1);
        ck_assert_str_eq(why, "not a dead-letter record");
        free(r);
        at += (size_t)n;
    }
    ck_assert_uint_eq(at, len);
    fx_spool_close(s);
    free(seg);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

/* ---- life cycle ------------------------------------------------------------------- */

START_TEST(test_round_trip)
{
    char dir[256];
    collector c = {0};
    make_tmpdir(dir, NULL);
    fx_spool *s = open_ok(dir, &c);
    ck_assert_uint_eq(c.nev, 0);
    ck_assert_uint_eq(c.ndmg, 0);
    ck_assert_str_eq(fx_spool_dir(s), dir);
    ck_assert_uint_eq(append_ok(s, mkev("documents", "42", "{\"id\":42}", 111)), 1);
    ck_assert_uint_eq(append_ok(s, mkev("documents", NULL, "{}", 222)), 2);
    ck_assert_uint_eq(append_ok(s, mkev("audit", "k", "", 333)), 3);
    ck_assert_uint_eq(fx_spool_undone(s), 3);
    commit_ok(s);
    fx_spool_close(s);

    s = open_ok(dir, &c);
    ck_assert_uint_eq(c.ndmg, 0);
    ck_assert_uint_eq(c.nev, 3);
    assert_event(&c.ev[0], 1, "documents", "42", "{\"id\":42}");
    ck_assert_uint_eq(c.ev[0].created_ms, 111);
    assert_event(&c.ev[1], 2, "documents", NULL, "{}");
    ck_assert_uint_eq(c.ev[1].created_ms, 222);
    assert_event(&c.ev[2], 3, "audit", "k", NULL);
    ck_assert_uint_eq(fx_spool_undone(s), 3);
    /* the next sequence number continues after the highest one seen */
    ck_assert_uint_eq(append_ok(s, mkev("audit", "k", "v", 444)), 4);
    fx_spool_close(s); /* commits what is buffered */

    s = open_ok(dir, &c);
    ck_assert_uint_eq(c.nev, 4);
    assert_event(&c.ev[3], 4, "audit", "k", "v");
    fx_spool_close(s);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_done_marks)
{
    char dir[256];
    collector c = {0};
    make_tmpdir(dir, NULL);
    fx_spool *s = open_ok(dir, &c);
    append_small(s, 1, 5, 30);
    fx_spool_done(s, 2);
    fx_spool_done(s, 4);
    fx_spool_done(s, 4);  /* twice: counted once */
    fx_spool_done(s, 99); /* unknown: ignored */
    fx_spool_done(s, 0);
    ck_assert_uint_eq(fx_spool_undone(s), 3);
    commit_ok(s);
    fx_spool_done(s, 2); /* already done and committed */
    ck_assert_uint_eq(fx_spool_undone(s), 3);
    /* done before its own commit: both go out in one commit */
    uint64_t six = append_ok(s, mkev("t", "k6", "six", 6));
    fx_spool_done(s, six);
    ck_assert_uint_eq(fx_spool_undone(s), 3);
    commit_ok(s);
    fx_spool_close(s);

    s = open_ok(dir, &c);
    static const uint64_t want[] = {1, 3, 5};
    assert_seqs(&c, want, 3);
    ck_assert_uint_eq(c.ndmg, 0);
    ck_assert_uint_eq(fx_spool_undone(s), 3);
    fx_spool_done(s, 3);
    ck_assert_uint_eq(fx_spool_undone(s), 2);
    commit_ok(s);
    fx_spool_close(s);
    s = open_ok(dir, &c);
    static const uint64_t want2[] = {1, 5};
    assert_seqs(&c, want2, 2);
    fx_spool_close(s);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_crash)
{
    char dir[256];
    collector c = {0};
    make_tmpdir(dir, NULL);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        char err[512];
        fx_spool *s = fx_spool_open(dir, NULL, NULL, NULL, err, sizeof(err));
        if (!s)
            _exit(2);
        char v[64];
        for (int i = 1; i <= 10; i++) {
            snprintf(v, sizeof(v), "event %d", i);
            fx_spool_event ev = mkev("t", "k", v, (uint64_t)i);
            if (fx_spool_append(s, &ev, err, sizeof(err)) < 0)
                _exit(3);
        }
        if (fx_spool_commit(s, err, sizeof(err)) < 0)
            _exit(4);
        for (uint64_t q = 1; q <= 4; q++)
            fx_spool_done(s, q);
        if (fx_spool_commit(s, err, sizeof(err)) < 0)
            _exit(5);
        /* buffered, never committed: lost with the process, as documented */
        fx_spool_event ev = mkev("t", "k", "uncommitted", 99);
        fx_spool_append(s, &ev, err, sizeof(err));
        fx_spool_done(s, 5);
        _exit(0); /* no close: the lock goes with the process */
    }
    int st;
    ck_assert(waitpid(pid, &st, 0) == pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);

    fx_spool *s = open_ok(dir, &c);
    ck_assert_uint_eq(c.ndmg, 0);
    static const uint64_t want[] = {5, 6, 7, 8, 9, 10};
    assert_seqs(&c, want, 6);
    ck_assert_str_eq(c.ev[0].value, "event 5");
    ck_assert_str_eq(c.ev[5].value, "event 10");
    ck_assert_uint_eq(append_ok(s, mkev("t", "k", "v", 1)), 11);
    fx_spool_close(s);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

#define BIG (1024u * 1024)
/* events of 1 MiB: a 16 MiB segment holds 15 of them */
static void append_big(fx_spool *s, int n, char *value)
{
    for (int i = 0; i < n; i++) {
        fx_spool_event ev = {.topic = "big", .topic_len = 3, .value = value, .value_len = BIG};
        char err[256];
        ck_assert_msg(fx_spool_append(s, &ev, err, sizeof(err)) == 0, "%s", err);
    }
}

START_TEST(test_done_across_segments)
{
    char dir[256];
    collector c = {0};
    segfile f[8];
    make_tmpdir(dir, NULL);
    char *value = malloc(BIG);
    memset(value, 'v', BIG);
    fx_spool *s = open_ok(dir, &c);
    append_big(s, 16, value); /* 1..15 in the first segment, 16 in the second */
    commit_ok(s);
    ck_assert_uint_eq(list_segs(dir, f, 8), 2);
    ck_assert_uint_eq(f[0].size, 15 * (24 + 20 + 3 + (uint64_t)BIG));
    ck_assert_uint_eq(f[1].size, 24 + 20 + 3 + (uint64_t)BIG);
    /* done marks for 1..14 land in the second segment */
    for (uint64_t q = 1; q <= 14; q++)
        fx_spool_done(s, q);
    commit_ok(s);
    ck_assert_uint_eq(list_segs(dir, f, 8), 2);
    ck_assert_uint_eq(f[1].size, 24 + 20 + 3 + (uint64_t)BIG + 24 + 14 * 8);
    fx_spool_close(s);

    s = open_ok(dir, &c);
    static const uint64_t want[] = {15, 16};
    assert_seqs(&c, want, 2);
    ck_assert_uint_eq(c.ndmg, 0);
    ck_assert_uint_eq(c.ev[0].value_len, BIG);
    ck_assert_uint_eq(list_segs(dir, f, 8), 3); /* both kept, and a new one for appends */
    ck_assert_uint_eq(f[2].size, 0);
    /* the prefix rule: 16 done, 15 not: nothing can go */
    fx_spool_done(s, 16);
    commit_ok(s);
    ck_assert_uint_eq(list_segs(dir, f, 8), 3);
    fx_spool_done(s, 15);
    commit_ok(s);
    ck_assert_uint_eq(list_segs(dir, f, 8), 1); /* the two old ones are gone */
    ck_assert_uint_eq(fx_spool_undone(s), 0);
    ck_assert_uint_eq(fx_spool_bytes(s), f[0].size);
    fx_spool_close(s);
    s = open_ok(dir, &c);
    ck_assert_uint_eq(c.nev, 0);
    ck_assert_uint_eq(append_ok(s, mkev("t", "k", "v", 1)), 17);
    fx_spool_close(s);
    free(value);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_rotation_and_deletion)
{
    char dir[256];
    collector c = {0};
    segfile f[8];
    make_tmpdir(dir, NULL);
    char *value = malloc(BIG);
    memset(value, 'r', BIG);
    fx_spool *s = open_ok(dir, &c);
    for (int i = 0; i < 8; i++) {
        append_big(s, 5, value);
        commit_ok(s);
    }
    ck_assert_uint_eq(list_segs(dir, f, 8), 3); /* 15 + 15 + 10 */
    uint64_t rec = 24 + 20 + 3 + (uint64_t)BIG;
    ck_assert_uint_eq(f[0].size, 15 * rec);
    ck_assert_uint_eq(f[1].size, 15 * rec);
    ck_assert_uint_eq(f[2].size, 10 * rec);
    ck_assert(f[0].size <= FX_SPOOL_SEGMENT_BYTES && f[0].size + rec > FX_SPOOL_SEGMENT_BYTES);
    ck_assert_uint_eq(fx_spool_bytes(s), 40 * rec);
    ck_assert_uint_eq(fx_spool_bytes_now(s), 40 * rec);
    /* the first segment done: it goes, the others stay */
    for (uint64_t q = 1; q <= 15; q++)
        fx_spool_done(s, q);
    commit_ok(s);
    ck_assert_uint_eq(list_segs(dir, f, 8), 2);
    /* everything done: the newest is replaced by an empty one, so nothing is left */
    for (uint64_t q = 16; q <= 40; q++)
        fx_spool_done(s, q);
    commit_ok(s);
    ck_assert_uint_eq(list_segs(dir, f, 8), 1);
    ck_assert_uint_eq(f[0].size, 0);
    ck_assert_uint_eq(fx_spool_bytes(s), 0);
    ck_assert_uint_eq(fx_spool_bytes_now(s), 0);
    ck_assert_uint_eq(fx_spool_undone(s), 0);
    fx_spool_close(s);
    /* the sequence numbers go on although no event is left on disk */
    s = open_ok(dir, &c);
    ck_assert_uint_eq(c.nev, 0);
    ck_assert_uint_eq(append_ok(s, mkev("t", "k", "v", 1)), 41);
    fx_spool_close(s);
    free(value);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

/* A spool bounded to a few MiB rotates at a fraction of its bound (events.c: spool_max_bytes / 8),
 * and the size is clamped to [FX_SPOOL_MIN_SEGMENT_BYTES, FX_SPOOL_SEGMENT_BYTES]. */
START_TEST(test_segment_size)
{
    char dir[256];
    collector c = {0};
    segfile f[64];
    make_tmpdir(dir, NULL);
    fx_spool *s = open_ok(dir, &c);
    fx_spool_set_segment_bytes(s, 100 * 1024);
    append_small(s, 1, 400, 1000); /* 400 records of ~1 KiB: 4 segments of at most 100 KiB */
    size_t n = list_segs(dir, f, 64);
    ck_assert_uint_ge(n, 4);
    for (size_t i = 0; i + 1 < n; i++)
        ck_assert_uint_le(f[i].size, 100 * 1024);
    /* all done: everything but an empty newest segment goes */
    for (uint64_t q = 1; q <= 400; q++)
        fx_spool_done(s, q);
    commit_ok(s);
    ck_assert_uint_le(fx_spool_bytes(s), 100 * 1024);
    /* below the minimum: clamped (a 1-byte segment per record would be absurd) */
    fx_spool_set_segment_bytes(s, 1);
    append_small(s, 401, 500, 1000);
    n = list_segs(dir, f, 64);
    for (size_t i = 0; i + 1 < n; i++)
        ck_assert_uint_ge(f[i].size + 1100, FX_SPOOL_MIN_SEGMENT_BYTES);
    fx_spool_close(s);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_bytes)
{
    char dir[256];
    collector c = {0};
    segfile f[8];
    make_tmpdir(dir, NULL);
    fx_spool *s = open_ok(dir, &c);
    ck_assert_uint_eq(fx_spool_bytes(s), 0);
    append_ok(s, mkev("topic", "key", "value", 1));     /* 24 + 20 + 5 + 3 + 5 */
    append_ok(s, mkev("topic", NULL, "0123456789", 1)); /* 24 + 20 + 5 + 10 */
    ck_assert_uint_eq(fx_spool_bytes(s), 57 + 59);
    ck_assert_uint_eq(fx_spool_bytes_now(s), 57 + 59);
    commit_ok(s);
    ck_assert_uint_eq(list_segs(dir, f, 8), 1);
    ck_assert_uint_eq(f[0].size, 57 + 59);
    ck_assert_uint_eq(fx_spool_bytes(s), 57 + 59);
    fx_spool_done(s, 1);
    fx_spool_done(s, 2);
    ck_assert_uint_eq(fx_spool_bytes(s), 57 + 59 + 24 + 16); /* one done-marks record, buffered */
    ck_assert_uint_eq(fx_spool_bytes_now(s), fx_spool_bytes(s));
    commit_ok(s);
    list_segs(dir, f, 8);
    ck_assert_uint_eq(f[0].size, 57 + 59 + 24 + 16); /* below 64 KiB: kept as the newest */
    ck_assert_uint_eq(fx_spool_bytes(s), f[0].size);
    fx_spool_close(s);
    s = open_ok(dir, &c);
    ck_assert_uint_eq(fx_spool_bytes(s), 0); /* the done segment deleted, a new empty one */
    fx_spool_close(s);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

/* ---- damage -------------------------------------------------------------------------- */

START_TEST(test_truncated_tail)
{
    char dir[256], name[64];
    size_t len, off[4];
    collector c = {0};
    make_tmpdir(dir, NULL);
    unsigned char *seg = three_events(dir, name, &len, off);
    size_t last = off[3] - off[2];
    for (size_t cut = off[2]; cut < len; cut++) {
        only_segment(dir, name, seg, cut);
        fx_spool *s = open_ok(dir, &c);
        static const uint64_t want[] = {1, 2};
        assert_seqs(&c, want, 2);
        ck_assert_str_eq(c.ev[1].key, "k2");
        size_t have = cut - off[2];
        if (have == 0) {
            ck_assert_uint_eq(c.ndmg, 0);
        } else {
            ck_assert_msg(c.ndmg == 1, "cut at %zu: %zu damage reports", cut, c.ndmg);
            ck_assert_str_eq(c.dmg[0].file, name);
            ck_assert_uint_eq(c.dmg[0].off, off[2]);
            ck_assert_uint_eq(c.dmg[0].len, have);
            char want_why[96];
            if (have < 12)
                snprintf(want_why, sizeof(want_why), "truncated record header: %zu of 24 bytes", have);
            else
                snprintf(want_why, sizeof(want_why), "truncated record: %zu of %zu bytes", have, last);
            ck_assert_str_eq(c.dmg[0].why, want_why);
        }
        /* appends go to a new segment, never after the damaged tail */
        ck_assert_uint_eq(append_ok(s, mkev("t", "k", "v", 1)), 3);
        fx_spool_close(s);
        s = open_ok(dir, &c);
        static const uint64_t want2[] = {1, 2, 3};
        assert_seqs(&c, want2, 3);
        ck_assert_str_eq(c.ev[2].value, "v");
        ck_assert_uint_eq(c.ndmg, have ? 1 : 0);
        fx_spool_close(s);
    }
    free(seg);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_flipped_bit)
{
    char dir[256], name[64];
    size_t len, off[4];
    collector c = {0};
    make_tmpdir(dir, NULL);
    unsigned char *seg = three_events(dir, name, &len, off);
    unsigned char *copy = malloc(len);
    for (size_t at = off[1]; at < off[2]; at++) {
        memcpy(copy, seg, len);
        copy[at] ^= (unsigned char)(1u << (at % 8));
        only_segment(dir, name, copy, len);
        fx_spool *s = open_ok(dir, &c);
        static const uint64_t want[] = {1, 3};
        assert_seqs(&c, want, 2);
        ck_assert_str_eq(c.ev[0].key, "k1");
        ck_assert_str_eq(c.ev[1].key, "k3");
        ck_assert_uint_eq(c.ev[1].created_ms, 1003);
        ck_assert_msg(c.ndmg == 1, "bit in byte %zu: %zu damage reports", at, c.ndmg);
        ck_assert_str_eq(c.dmg[0].file, name);
        ck_assert_uint_eq(c.dmg[0].off, off[1]);
        ck_assert_uint_eq(c.dmg[0].len, off[2] - off[1]);
        ck_assert(c.dmg[0].why[0] != '\0');
        fx_spool_close(s);
    }
    free(copy);
    free(seg);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_garbage_between)
{
    char dir[256], name[64];
    size_t len, off[4];
    collector c = {0};
    make_tmpdir(dir, NULL);
    unsigned char *seg = three_events(dir, name, &len, off);
    static const char junk[] = "this is not a record, just 37 bytes!!";
    ck_assert_uint_eq(strlen(junk), 37);
    /* a header and fixed part that claim a record of 5,000 bytes (topic 1, value 4,979): the
     * file ends first, but a valid record follows, so the length is what is wrong */
    static const unsigned char fake[44] = {0xff, 'F', 'X', 'S', 1, 1, 0, 0, 0x88, 0x13, 0, 0, 7, [24 + 8] = 1,
                                           [24 + 16] = 0x73, [24 + 17] = 0x13};
    unsigned char *b = malloc(len + 64 + sizeof(fake) + 100);
    for (int variant = 0; variant < 3; variant++) {
        size_t n = 0, gap = 0, at = off[1];
        memcpy(b, seg, off[1]);
        n = off[1];
        if (variant == 0) {
            memcpy(b + n, junk, 37);
            gap = 37;
        } else if (variant == 1) {
            memcpy(b + n, fake, sizeof(fake));
            gap = sizeof(fake);
        } else {
            at = len; /* zeros after the last record, as a crash may leave */
        }
        if (variant < 2) {
            n += gap;
            memcpy(b + n, seg + off[1], len - off[1]);
            n += len - off[1];
        } else {
            memcpy(b + n, seg + off[1], len - off[1]);
            n = len;
            memset(b + n, 0, 100);
            n += 100;
            gap = 100;
        }
        only_segment(dir, name, b, n);
        fx_spool *s = open_ok(dir, &c);
        static const uint64_t want[] = {1, 2, 3};
        assert_seqs(&c, want, 3);
        ck_assert_uint_eq(c.ndmg, 1);
        ck_assert_uint_eq(c.dmg[0].off, at);
        ck_assert_uint_eq(c.dmg[0].len, gap);
        ck_assert_str_eq(c.dmg[0].why, variant == 1 ? "bad length (the record runs into the next valid one)"
                                                     : "bad magic");
        fx_spool_close(s);
    }
    free(b);
    free(seg);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_repeated_record)
{
    char dir[256], name[64];
    size_t len, off[4];
    collector c = {0};
    make_tmpdir(dir, NULL);
    unsigned char *seg = three_events(dir, name, &len, off);
    /* 1 2 3 2: a record written twice (say, a retried write that could not be cut back) */
    unsigned char *b = malloc(len + off[2] - off[1]);
    memcpy(b, seg, len);
    memcpy(b + len, seg + off[1], off[2] - off[1]);
    only_segment(dir, name, b, len + off[2] - off[1]);
    fx_spool *s = open_ok(dir, &c);
    static const uint64_t want[] = {1, 2, 3};
    assert_seqs(&c, want, 3);
    ck_assert_uint_eq(c.ndmg, 1);
    ck_assert_uint_eq(c.dmg[0].off, len);
    ck_assert_str_eq(c.dmg[0].why, "sequence number 2 is not above 3 (a repeated record, skipped)");
    fx_spool_done(s, 2);
    commit_ok(s);
    fx_spool_close(s);
    /* the done mark for 2 written twice: 2 still counts as one event done */
    segfile f[8];
    ck_assert_uint_eq(list_segs(dir, f, 8), 2); /* 1 2 3 2, then the one with the done mark */
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, f[1].name);
    size_t dlen;
    unsigned char *d = read_all(p, &dlen);
    ck_assert_uint_eq(dlen, 24 + 8);
    d = realloc(d, 2 * dlen);
    memcpy(d + dlen, d, dlen);
    write_all(p, d, 2 * dlen);
    free(d);
    s = open_ok(dir, &c);
    static const uint64_t want2[] = {1, 3};
    assert_seqs(&c, want2, 2);
    ck_assert_uint_eq(fx_spool_undone(s), 2);
    fx_spool_done(s, 1);
    ck_assert_uint_eq(fx_spool_undone(s), 1);
    fx_spool_close(s);
    free(b);
    free(seg);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

/* ---- refusals ------------------------------------------------------------------------- */

START_TEST(test_lock)
{
    char dir[256], err[512] = "";
    collector c = {0};
    make_tmpdir(dir, NULL);
    fx_spool *s = open_ok(dir, &c);
    fx_spool *t = fx_spool_open(dir, NULL, NULL, NULL, err, sizeof(err));
    ck_assert(t == NULL);
    ck_assert_msg(strstr(err, "in use by another gateway") && strstr(err, "spool.lock") && strstr(err, dir),
                  "err: %s", err);
    fx_spool_close(s);
    t = fx_spool_open(dir, NULL, NULL, NULL, err, sizeof(err));
    ck_assert_msg(t != NULL, "%s", err);
    fx_spool_close(t);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_unusable_dir)
{
    char err[512] = "";
    fx_spool *s = fx_spool_open("/dev/null/spool", NULL, NULL, NULL, err, sizeof(err));
    ck_assert(s == NULL);
    ck_assert_msg(strstr(err, "/dev/null/spool") && strstr(err, "Not a directory"), "err: %s", err);
    /* nested directories are created */
    char dir[256], sub[512];
    make_tmpdir(dir, NULL);
    snprintf(sub, sizeof(sub), "%s/a/b/spool", dir);
    s = fx_spool_open(sub, NULL, NULL, NULL, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    struct stat st;
    ck_assert(stat(sub, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    fx_spool_close(s);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_limits)
{
    char dir[256], err[512];
    collector c = {0};
    make_tmpdir(dir, NULL);
    fx_spool *s = open_ok(dir, &c);
    char *topic = malloc(FX_SPOOL_MAX_TOPIC + 2);
    memset(topic, 'T', FX_SPOOL_MAX_TOPIC + 1);
    topic[FX_SPOOL_MAX_TOPIC + 1] = '\0';
    char *key = malloc(FX_SPOOL_MAX_KEY + 1);
    memset(key, 'K', FX_SPOOL_MAX_KEY + 1);

    fx_spool_event ev = {.topic = topic, .topic_len = FX_SPOOL_MAX_TOPIC + 1, .value = "v", .value_len = 1};
    ck_assert_int_eq(fx_spool_append(s, &ev, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "topic of 250 bytes") && strstr(err, "249"), "err: %s", err);
    ev = (fx_spool_event){.topic = "t", .topic_len = 1, .key = key, .key_len = FX_SPOOL_MAX_KEY + 1};
    ck_assert_int_eq(fx_spool_append(s, &ev, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "key of 65537 bytes") && strstr(err, "65536"), "err: %s", err);
    /* never read: refused on the length */
    ev = (fx_spool_event){.topic = "t", .topic_len = 1, .value = "v", .value_len = FX_SPOOL_MAX_VALUE + 1u};
    ck_assert_int_eq(fx_spool_append(s, &ev, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "value of 134217729 bytes"), "err: %s", err);
    ev = (fx_spool_event){.topic = "", .topic_len = 0, .value = "v", .value_len = 1};
    ck_assert_int_eq(fx_spool_append(s, &ev, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "without a topic"), "err: %s", err);
    ck_assert_uint_eq(fx_spool_undone(s), 0);
    ck_assert_uint_eq(fx_spool_bytes(s), 0);

    /* exactly at the limits: stored and read back */
    ev = (fx_spool_event){.topic = topic, .topic_len = FX_SPOOL_MAX_TOPIC, .key = key,
                          .key_len = FX_SPOOL_MAX_KEY, .value = "v", .value_len = 1};
    ck_assert_int_eq(fx_spool_append(s, &ev, err, sizeof(err)), 0);
    ck_assert_uint_eq(ev.seq, 1);
    fx_spool_close(s);
    s = open_ok(dir, &c);
    ck_assert_uint_eq(c.nev, 1);
    ck_assert_uint_eq(c.ev[0].topic_len, FX_SPOOL_MAX_TOPIC);
    ck_assert_uint_eq(c.ev[0].key_len, FX_SPOOL_MAX_KEY);
    ck_assert(!memcmp(c.ev[0].key, key, FX_SPOOL_MAX_KEY));
    fx_spool_close(s);
    free(topic);
    free(key);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

START_TEST(test_quarantine)
{
    char dir[256], err[512], path[512];
    collector c = {0};
    make_tmpdir(dir, NULL);
    fx_spool *s = open_ok(dir, &c);
    fx_spool_event ev = mkev("documents", "42", "{\"too\":\"big\"}", 777);
    ck_assert_int_eq(fx_spool_append(s, &ev, err, sizeof(err)), 0);
    commit_ok(s);
    ck_assert_msg(fx_spool_quarantine(s, &ev, "Broker: Message size too large", err, sizeof(err)) == 0, "%s", err);
    fx_spool_event ev2 = mkev("audit", NULL, "x", 1);
    ev2.seq = 5;
    ck_assert_msg(fx_spool_quarantine(s, &ev2, "", err, sizeof(err)) == 0, "%s", err);
    snprintf(path, sizeof(path), "%s/dead-letter.log", dir);
    size_t len;
    unsigned char *b = read_all(path, &len);
    fx_spool_event got;
    const char *reason, *why = NULL;
    size_t rlen;
    long n = fx_spool_decode_dead(b, len, &got, &reason, &rlen, &why);
    ck_assert_msg(n > 0, "%s", why);
    ck_assert_uint_eq(got.seq, ev.seq);
    ck_assert_uint_eq(got.created_ms, 777);
    ck_assert(got.topic_len == 9 && !memcmp(got.topic, "documents", 9));
    ck_assert(got.key_len == 2 && !memcmp(got.key, "42", 2));
    ck_assert(got.value_len == ev.value_len && !memcmp(got.value, ev.value, ev.value_len));
    ck_assert(rlen == 30 && !memcmp(reason, "Broker: Message size too large", 30));
    int type = 0;
    ck_assert_int_eq(fx_spool_decode(b, len, &type, NULL, NULL, NULL, NULL), n);
    ck_assert_int_eq(type, FX_SPOOL_REC_DEAD);
    long n2 = fx_spool_decode_dead(b + n, len - (size_t)n, &got, &reason, &rlen, &why);
    ck_assert_int_eq((size_t)n + (size_t)n2, len);
    ck_assert_uint_eq(got.seq, 5);
    ck_assert_uint_eq(rlen, 0);
    free(b);
    /* the caller marks it done; dead-letter.log is never read back */
    fx_spool_done(s, ev.seq);
    fx_spool_close(s);
    s = open_ok(dir, &c);
    ck_assert_uint_eq(c.nev, 0);
    ck_assert_uint_eq(c.ndmg, 0);
    fx_spool_close(s);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

/* ---- failure ------------------------------------------------------------------------- */

static void set_fsize_limit(rlim_t soft)
{
    struct rlimit rl;
    ck_assert(getrlimit(RLIMIT_FSIZE, &rl) == 0);
    rl.rlim_cur = soft == RLIM_INFINITY ? rl.rlim_max : soft;
    ck_assert(setrlimit(RLIMIT_FSIZE, &rl) == 0);
}

START_TEST(test_commit_failure)
{
    char dir[256], err[512], path[512];
    collector c = {0};
    segfile f[8];
    make_tmpdir(dir, NULL);
    signal(SIGXFSZ, SIG_IGN); /* write(2) returns EFBIG instead */
    fx_spool *s = open_ok(dir, &c);
    append_small(s, 1, 5, 600);
    ck_assert_uint_eq(list_segs(dir, f, 8), 1);
    uint64_t good = f[0].size;
    /* room for one record and a half: the write stops part way, then fails */
    set_fsize_limit(good + 1000);
    char v[700];
    memset(v, 'x', sizeof(v) - 1);
    v[sizeof(v) - 1] = '\0';
    for (int i = 6; i <= 15; i++)
        append_ok(s, mkev("t", "k", v, (uint64_t)i));
    fx_spool_done(s, 1);
    uint64_t buffered = fx_spool_bytes(s);
    ck_assert_int_eq(fx_spool_commit(s, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "File too large") && strstr(err, f[0].name) && strstr(err, "retried"), "err: %s", err);
    list_segs(dir, f, 8);
    ck_assert_uint_eq(f[0].size, good); /* cut back: no half record */
    ck_assert_uint_eq(fx_spool_bytes(s), buffered);
    ck_assert_uint_eq(fx_spool_undone(s), 14);
    /* a second failure changes nothing either */
    ck_assert_int_eq(fx_spool_commit(s, err, sizeof(err)), -1);
    list_segs(dir, f, 8);
    ck_assert_uint_eq(f[0].size, good);

    /* the dead letter fails the same way and leaves nothing behind */
    set_fsize_limit(100);
    fx_spool_event ev = mkev("t", "k", v, 1);
    ev.seq = 3;
    ck_assert_int_eq(fx_spool_quarantine(s, &ev, "reason", err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "dead-letter.log") && strstr(err, "File too large"), "err: %s", err);
    struct stat st;
    snprintf(path, sizeof(path), "%s/dead-letter.log", dir);
    ck_assert(stat(path, &st) == 0 && st.st_size == 0);

    set_fsize_limit(RLIM_INFINITY);
    commit_ok(s);
    list_segs(dir, f, 8);
    ck_assert_uint_eq(f[0].size, buffered);
    ck_assert_uint_eq(fx_spool_bytes(s), buffered);
    ck_assert_int_eq(fx_spool_quarantine(s, &ev, "reason", err, sizeof(err)), 0);
    fx_spool_close(s);

    s = open_ok(dir, &c);
    ck_assert_uint_eq(c.ndmg, 0);
    ck_assert_uint_eq(c.nev, 14);
    for (size_t i = 0; i < 14; i++)
        ck_assert_uint_eq(c.ev[i].seq, i + 2); /* each once, in order */
    ck_assert_uint_eq(c.ev[13].value_len, 699);
    fx_spool_close(s);
    collector_free(&c);
    fx_test_rm_rf(dir);
}
END_TEST

/* ---- throughput ------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Events of 600 bytes in commits of 100, each commit also marking the batch before
 * it done (the delivery reports). Returns events per second. */
static double throughput(const char *root, int nevents)
{
    char dir[256];
    collector c = {0};
    make_tmpdir(dir, root);
    fx_spool *s = open_ok(dir, &c);
    char value[601];
    memset(value, 'j', 600);
    value[600] = '\0';
    fx_spool_event tmpl = mkev("documents.events", "document-000042", value, 1700000000000u);
    double t0 = now_s();
    uint64_t prev_lo = 0, prev_hi = 0;
    for (int i = 0; i < nevents; i += 100) {
        uint64_t lo = 0, hi = 0;
        for (int k = 0; k < 100; k++) {
            fx_spool_event ev = tmpl;
            char err[256];
            if (fx_spool_append(s, &ev, err, sizeof(err)) < 0)
                ck_abort_msg("%s", err);
            if (!lo)
                lo = ev.seq;
            hi = ev.seq;
        }
        for (uint64_t q = prev_lo; prev_lo && q <= prev_hi; q++)
            fx_spool_done(s, q);
        commit_ok(s);
        prev_lo = lo;
        prev_hi = hi;
    }
    double dt = now_s() - t0;
    fx_spool_close(s);
    collector_free(&c);
    fx_test_rm_rf(dir);
    return nevents / dt;
}

START_TEST(test_throughput)
{
    struct stat st;
    int n = 200000;
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) {
        /* tmpfs: fdatasync costs nothing, so this is the spool's own work */
        double r = throughput("/dev/shm", n);
        printf("spool throughput (tmpfs, this build): %.0f events/s of 600 bytes, commits of 100\n", r);
        ck_assert_msg(r >= 100000, "only %.0f events/s", r);
    }
    double r = throughput(NULL, n / 4);
    printf("spool throughput (TMPDIR, fdatasync per commit): %.0f events/s\n", r);
}
END_TEST

static Suite *spool_suite(void)
{
    Suite *s = suite_create("spool");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_crc32c);
    tcase_add_loop_test(tc, test_decode_table, 0, (int)(sizeof(damage_cases) / sizeof(damage_cases[0])));
    tcase_add_test(tc, test_decode_records);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_done_marks);
    tcase_add_test(tc, test_crash);
    tcase_add_test(tc, test_done_across_segments);
    tcase_add_test(tc, test_rotation_and_deletion);
    tcase_add_test(tc, test_segment_size);
    tcase_add_test(tc, test_bytes);
    tcase_add_test(tc, test_truncated_tail);
    tcase_add_test(tc, test_flipped_bit);
    tcase_add_test(tc, test_garbage_between);
    tcase_add_test(tc, test_repeated_record);
    tcase_add_test(tc, test_lock);
    tcase_add_test(tc, test_unusable_dir);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_quarantine);
    tcase_add_test(tc, test_commit_failure);
    tcase_add_test(tc, test_throughput);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(spool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
