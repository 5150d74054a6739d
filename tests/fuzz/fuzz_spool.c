/*
 * fuzz_spool.c — libFuzzer harness for the spool's record decoder and its
 * recovery (gateway/spool.c). The input is the bytes of one segment file.
 *
 *   decode_every_offset  fx_spool_decode at every offset of a copy of exact
 *                        size (ASan sees any read past it); what every
 *                        accepted record must satisfy: fields inside it and
 *                        within the limits, lengths adding up, each proper
 *                        prefix "need more" (so a cut record is never taken
 *                        for garbage)
 *   expect               recovery as spool.h describes it, done the slow way:
 *                        a record where one decodes, else a damaged range up
 *                        to the next offset where one decodes; events whose
 *                        seq does not grow and dead letters are skipped (and
 *                        reported); a done mark clears an event seen before it
 *   recover              the input as seg-0000000000000001.log in a
 *                        per-process temp dir (tmpfs when there is one,
 *                        emptied on every run): fx_spool_open must hand over
 *                        exactly the expected events and report exactly the
 *                        expected ranges; an append then gets the next seq,
 *                        and a reopen hands over the same events plus it
 *
 *   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
 *   ninja -C build-fuzz tests/fuzz/fuzz_spool
 *   build-fuzz/tests/fuzz/fuzz_spool -max_len=4096 tests/data/spool
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool.h"
#include "../unit/tmpdir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_spool: check failed at line %d: %s\n", __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define HDR FX_SPOOL_HEADER_BYTES
#define MAX_ITEMS 4096

static int inside(const void *p, size_t n, const unsigned char *buf, size_t len)
{
    const unsigned char *q = p;
    return q >= buf && n <= len && q - buf <= (ptrdiff_t)(len - n);
}

/* ---- decoder --------------------------------------------------------------------- */

static void check_record(const unsigned char *r, size_t n)
{
    int type = 0;
    fx_spool_event ev;
    const unsigned char *seqs = NULL;
    size_t nseqs = 0;
    const char *why = NULL;
    CHECK(fx_spool_decode(r, n, &type, &ev, &seqs, &nseqs, &why) == (long)n);
    CHECK(n >= HDR);
    if (type == FX_SPOOL_REC_DONE) {
        CHECK(seqs == r + HDR && nseqs >= 1 && nseqs <= FX_SPOOL_MAX_DONE && HDR + 8 * nseqs == n);
    } else {
        CHECK(type == FX_SPOOL_REC_EVENT || type == FX_SPOOL_REC_DEAD);
        CHECK(ev.seq > 0);
        CHECK(ev.topic_len >= 1 && ev.topic_len <= FX_SPOOL_MAX_TOPIC);
        CHECK(ev.key_len <= FX_SPOOL_MAX_KEY && ev.value_len <= FX_SPOOL_MAX_VALUE);
        CHECK(inside(ev.topic, ev.topic_len, r, n) && inside(ev.key, ev.key_len, r, n));
        CHECK(inside(ev.value, ev.value_len, r, n));
        CHECK((const unsigned char *)ev.topic == r + HDR + 20);
        CHECK(ev.key == ev.topic + ev.topic_len && ev.value == ev.key + ev.key_len);
        const char *reason = NULL;
        size_t rlen = 0;
        long d = fx_spool_decode_dead(r, n, NULL, &reason, &rlen, &why);
        if (type == FX_SPOOL_REC_DEAD) {
            CHECK(d == (long)n && reason == ev.value + ev.value_len && inside(reason, rlen, r, n));
            CHECK(HDR + 20 + ev.topic_len + ev.key_len + ev.value_len + rlen == n);
        } else {
            CHECK(d == -1 && why != NULL);
            CHECK(HDR + 20 + ev.topic_len + ev.key_len + ev.value_len == n);
        }
    }
    /* every proper prefix (all of them for small records) needs more bytes */
    size_t step = n <= 512 ? 1 : n / 97 + 1;
    for (size_t k = 0; k < n; k += step) {
        unsigned char *p = malloc(k ? k : 1);
        CHECK(p != NULL);
        memcpy(p, r, k);
        CHECK(fx_spool_decode(p, k, NULL, NULL, NULL, NULL, &why) == 0);
        free(p);
    }
}

static long decode_at(const unsigned char *buf, size_t len, size_t off)
{
    const char *why = NULL;
    long n = fx_spool_decode(buf + off, len - off, NULL, NULL, NULL, NULL, &why);
    CHECK(n >= -1 && (n <= 0 || (size_t)n <= len - off));
    if (n < 0)
        CHECK(why != NULL && *why);
    return n;
}

static void decode_every_offset(const unsigned char *buf, size_t len)
{
    for (size_t off = 0; off < len; off++) {
        long n = decode_at(buf, len, off);
        if (n > 0) {
            unsigned char *r = malloc((size_t)n);
            CHECK(r != NULL);
            memcpy(r, buf + off, (size_t)n);
            check_record(r, (size_t)n);
            free(r);
        }
    }
}

/* ---- what recovery must do --------------------------------------------------------- */

typedef struct range {
    uint64_t off, len;
} range;

typedef struct outcome {
    uint64_t seqs[MAX_ITEMS];
    const char *values[MAX_ITEMS]; /* expect: into the input; recover: copies */
    size_t value_lens[MAX_ITEMS];
    size_t nev;
    range dmg[MAX_ITEMS];
    size_t ndmg;
    uint64_t last_seq;
} outcome;

static void expect(const unsigned char *buf, size_t len, outcome *o)
{
    static uint64_t seen[MAX_ITEMS];
    static int done[MAX_ITEMS];
    static const char *vals[MAX_ITEMS];
    static size_t vlens[MAX_ITEMS];
    size_t nseen = 0;
    memset(o, 0, sizeof(*o));
    size_t off = 0;
    while (off < len) {
        long n = decode_at(buf, len, off);
        if (n <= 0) {
            size_t next = off + 1;
            while (next < len && decode_at(buf, len, next) <= 0)
                next++;
            CHECK(o->ndmg < MAX_ITEMS);
            o->dmg[o->ndmg++] = (range){off, next - off};
            off = next;
            continue;
        }
        int type;
        fx_spool_event ev;
        const unsigned char *sq;
        size_t nsq;
        fx_spool_decode(buf + off, len - off, &type, &ev, &sq, &nsq, NULL);
        if (type == FX_SPOOL_REC_DEAD || (type == FX_SPOOL_REC_EVENT && ev.seq <= o->last_seq)) {
            CHECK(o->ndmg < MAX_ITEMS);
            o->dmg[o->ndmg++] = (range){off, (uint64_t)n};
        } else if (type == FX_SPOOL_REC_EVENT) {
            CHECK(nseen < MAX_ITEMS);
            seen[nseen] = ev.seq;
            done[nseen] = 0;
            vals[nseen] = ev.value;
            vlens[nseen++] = ev.value_len;
            o->last_seq = ev.seq;
        } else {
            for (size_t i = 0; i < nsq; i++) {
                uint64_t q = 0;
                for (int b = 7; b >= 0; b--)
                    q = q << 8 | sq[8 * i + (size_t)b];
                for (size_t k = 0; k < nseen; k++)
                    if (seen[k] == q)
                        done[k] = 1;
            }
        }
        off += (size_t)n;
    }
    for (size_t k = 0; k < nseen; k++)
        if (!done[k]) {
            o->seqs[o->nev] = seen[k];
            o->values[o->nev] = vals[k];
            o->value_lens[o->nev++] = vlens[k];
        }
}

/* ---- recovery -------------------------------------------------------------------- */

static void on_undone(void *arg, const fx_spool_event *ev)
{
    outcome *o = arg;
    CHECK(o->nev < MAX_ITEMS);
    CHECK(ev->seq > o->last_seq);
    o->last_seq = ev->seq;
    char *v = malloc(ev->value_len + 1);
    CHECK(v != NULL);
    if (ev->value_len)
        memcpy(v, ev->value, ev->value_len);
    o->seqs[o->nev] = ev->seq;
    o->values[o->nev] = v;
    o->value_lens[o->nev++] = ev->value_len;
}

static void on_damage(void *arg, const char *file, uint64_t off, uint64_t len, const char *why)
{
    outcome *o = arg;
    CHECK(o->ndmg < MAX_ITEMS);
    CHECK(why != NULL && *why);
    CHECK(file != NULL && strchr(file, '/') == NULL);
    o->dmg[o->ndmg++] = (range){off, len};
}

static void outcome_free(outcome *o)
{
    for (size_t i = 0; i < o->nev; i++)
        free((void *)o->values[i]);
    o->nev = 0;
}


static char work[256];

static void remove_work_dir(void)
{
    CHECK(fx_test_clear_dir(work) == 0);
    rmdir(work);
}

/* One directory per process, emptied on every run and removed at exit. */
static const char *work_dir(void)
{
    char *dir = work;
    if (!dir[0]) {
        struct stat st;
        const char *root = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                               ? "/dev/shm"
                               : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(dir, sizeof(work), "%s/fuzz_spool.%ld", root, (long)getpid());
        CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
        atexit(remove_work_dir);
    }
    return dir;
}

static fx_spool *open_spool(const char *dir, outcome *o)
{
    char err[512];
    memset(o, 0, sizeof(*o));
    fx_spool *s = fx_spool_open(dir, on_undone, on_damage, o, err, sizeof(err));
    if (!s)
        fprintf(stderr, "fuzz_spool: %s\n", err);
    CHECK(s != NULL);
    return s;
}

static void same_events(const outcome *got, const outcome *want, size_t n)
{
    CHECK(got->nev >= n);
    for (size_t i = 0; i < n; i++) {
        CHECK(got->seqs[i] == want->seqs[i]);
        CHECK(got->value_lens[i] == want->value_lens[i]);
        CHECK(want->value_lens[i] == 0 || !memcmp(got->values[i], want->values[i], want->value_lens[i]));
    }
}

static void recover(const unsigned char *buf, size_t len, const outcome *want)
{
    static outcome got, again;
    const char *dir = work_dir();
    char path[512];
    CHECK(fx_test_clear_dir(dir) == 0);
    snprintf(path, sizeof(path), "%s/seg-0000000000000001.log", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(buf, 1, len, f) == len);
    CHECK(fclose(f) == 0);

    fx_spool *s = open_spool(dir, &got);
    CHECK(got.nev == want->nev);
    same_events(&got, want, want->nev);
    CHECK(got.ndmg == want->ndmg);
    for (size_t i = 0; i < want->ndmg; i++)
        CHECK(got.dmg[i].off == want->dmg[i].off && got.dmg[i].len == want->dmg[i].len);
    CHECK(fx_spool_undone(s) == want->nev);

    /* the next seq continues after the highest one taken */
    char err[512];
    fx_spool_event ev = {.topic = "t", .topic_len = 1, .value = "new", .value_len = 3};
    CHECK(fx_spool_append(s, &ev, err, sizeof(err)) == 0);
    CHECK(ev.seq == want->last_seq + 1);
    CHECK(fx_spool_commit(s, err, sizeof(err)) == 0);
    fx_spool_close(s);

    struct stat st;
    int kept = stat(path, &st) == 0;
    CHECK(kept == (want->nev > 0)); /* deleted exactly when nothing in it is undone */
    s = open_spool(dir, &again);
    CHECK(again.nev == want->nev + 1);
    same_events(&again, want, want->nev);
    CHECK(again.seqs[want->nev] == ev.seq);
    CHECK(again.ndmg == (kept ? want->ndmg : 0));
    fx_spool_close(s);
    outcome_free(&got);
    outcome_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static outcome want;
    unsigned char *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);
    decode_every_offset(buf, size);
    expect(buf, size, &want);
    recover(buf, size, &want);
    free(buf);
    return 0;
}
