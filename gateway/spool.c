/*
 * spool.c — the events' on-disk log (contract and record layout: spool.h).
 *
 *   codec          little-endian helpers, CRC-32C (the SSE4.2 instruction
 *                  behind a CPU check, a byte table otherwise), the record
 *                  encoders and decode(), which fx_spool_decode and recovery
 *                  share; decode() checks every field it has bytes for, so a
 *                  proper prefix of a valid record is "need more" (0), never
 *                  "invalid", and a truncated tail can be told from garbage
 *   pending seqs   runs of consecutive sequence numbers with one bit each
 *                  (1 = not done yet); each run belongs to one segment and the
 *                  bits feed that segment's undone count. A bit clears once,
 *                  so a seq marked done twice counts once, and a done mark
 *                  may name a seq in any older segment
 *   buffer         records waiting for the commit, in chunks: one per segment
 *                  they will land in. Rotation is decided when a record is
 *                  buffered, so an event knows its segment at once
 *   commit         per chunk: create the file if new (and sync the directory),
 *                  one pwrite loop, one fdatasync; a failure truncates the file
 *                  back to its last good length and keeps that chunk and the
 *                  ones after it. Then housekeeping: delete the all-done prefix
 *                  of segments (never the newest), replace an idle all-done
 *                  newest segment by an empty one
 *   recovery       pass 1 decodes every segment (damage reports, events into
 *                  the pending bits, done marks clear them); pass 2 rereads the
 *                  segments that still hold undone events and hands those over
 *   quarantine     dead-letter.log: same records, type 3, with the reason
 *
 * Only the events thread calls in (spool.h); bytes_now is the one field
 * another thread reads.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define HDR FX_SPOOL_HEADER_BYTES
#define EV_FIXED 20u /* created_ms, topic_len, reason_len, key_len, value_len */
#define REC_VERSION 1
#define MAX_EVENT_PAYLOAD                                                                          \
    ((size_t)EV_FIXED + FX_SPOOL_MAX_TOPIC + FX_SPOOL_MAX_KEY + FX_SPOOL_MAX_VALUE + FX_SPOOL_MAX_REASON)
/* An all-done newest segment is replaced by an empty one from this size on: small
 * enough to stay far below any spool_max_bytes (>= 1 MiB), large enough that a quiet
 * gateway does not create and delete a file per commit. */
#define IDLE_ROTATE_BYTES (64u * 1024)
/* The commit buffer's memory is kept up to this size between commits. */
#define BUF_KEEP_BYTES (4u * 1024 * 1024)
#define LOCK_NAME "spool.lock"
#define DEAD_NAME "dead-letter.log"
/* sequence numbers and segment numbers stay below this (no overflow on +1) */
#define SEQ_LIMIT (UINT64_C(1) << 62)

static const unsigned char rec_magic[4] = {0xff, 'F', 'X', 'S'};

/* ---- codec ------------------------------------------------------------------------- */

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* CRC-32C, reflected polynomial 0x82f63b78: crc_table[i] is the CRC of byte i. */
static const uint32_t crc_table[256] = {
    0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c, 0x26a1e7e8, 0xd4ca64eb,
    0x8ad958cf, 0x78b2dbcc, 0x6be22838, 0x9989ab3b, 0x4d43cfd0, 0xbf284cd3, 0xac78bf27, 0x5e133c24,
    0x105ec76f, 0xe235446c, 0xf165b798, 0x030e349b, 0xd7c45070, 0x25afd373, 0x36ff2087, 0xc494a384,
    0x9a879fa0, 0x68ec1ca3, 0x7bbcef57, 0x89d76c54, 0x5d1d08bf, 0xaf768bbc, 0xbc267848, 0x4e4dfb4b,
    0x20bd8ede, 0xd2d60ddd, 0xc186fe29, 0x33ed7d2a, 0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35,
    0xaa64d611, 0x580f5512, 0x4b5fa6e6, 0xb93425e5, 0x6dfe410e, 0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa,
    0x30e349b1, 0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad, 0x1642ae59, 0xe4292d5a,
    0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a, 0x7da08661, 0x8fcb0562, 0x9c9bf696, 0x6ef07595,
    0x417b1dbc, 0xb3109ebf, 0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0, 0x67dafa54, 0x95b17957,
    0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c, 0xfe53516f, 0xed03a29b, 0x1f682198,
    0x5125dad3, 0xa34e59d0, 0xb01eaa24, 0x42752927, 0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38,
    0xdbfc821c, 0x2997011f, 0x3ac7f2eb, 0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7,
    0x61c69362, 0x93ad1061, 0x80fde395, 0x72966096, 0xa65c047d, 0x5437877e, 0x4767748a, 0xb50cf789,
    0xeb1fcbad, 0x197448ae, 0x0a24bb5a, 0xf84f3859, 0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46,
    0x7198540d, 0x83f3d70e, 0x90a324fa, 0x62c8a7f9, 0xb602c312, 0x44694011, 0x5739b3e5, 0xa55230e6,
    0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de, 0xdde0eb2a, 0x2f8b6829,
    0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c, 0x456cac67, 0xb7072f64, 0xa457dc90, 0x563c5f93,
    0x082f63b7, 0xfa44e0b4, 0xe9141340, 0x1b7f9043, 0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c,
    0x92a8fc17, 0x60c37f14, 0x73938ce0, 0x81f80fe3, 0x55326b08, 0xa759e80b, 0xb4091bff, 0x466298fc,
    0x1871a4d8, 0xea1a27db, 0xf94ad42f, 0x0b21572c, 0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033,
    0xa24bb5a6, 0x502036a5, 0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d,
    0x2892ed69, 0xdaf96e6a, 0xc9a99d9e, 0x3bc21e9d, 0xef087a76, 0x1d63f975, 0x0e330a81, 0xfc588982,
    0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d, 0x758fe5d6, 0x87e466d5, 0x94b49521, 0x66df1622,
    0x38cc2a06, 0xcaa7a905, 0xd9f75af1, 0x2b9cd9f2, 0xff56bd19, 0x0d3d3e1a, 0x1e6dcdee, 0xec064eed,
    0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530, 0x0417b1db, 0xf67c32d8, 0xe52cc12c, 0x1747422f,
    0x49547e0b, 0xbb3ffd08, 0xa86f0efc, 0x5a048dff, 0x8ecee914, 0x7ca56a17, 0x6ff599e3, 0x9d9e1ae0,
    0xd3d3e1ab, 0x21b862a8, 0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540,
    0x590ab964, 0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78, 0x7fab5e8c, 0x8dc0dd8f,
    0xe330a81a, 0x115b2b19, 0x020bd8ed, 0xf0605bee, 0x24aa3f05, 0xd6c1bc06, 0xc5914ff2, 0x37faccf1,
    0x69e9f0d5, 0x9b8273d6, 0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9, 0x4f48173d, 0xbd23943e,
    0xf36e6f75, 0x0105ec76, 0x12551f82, 0xe03e9c81, 0x34f4f86a, 0xc69f7b69, 0xd5cf889d, 0x27a40b9e,
    0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e, 0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351,
};

static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t n)
{
    while (n--)
        c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_CRC_HW 1
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const unsigned char *p, size_t n)
{
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = __builtin_ia32_crc32di(c64, w);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

uint32_t fx_spool_crc32c_portable(uint32_t crc, const void *p, size_t n)
{
    return ~crc_sw(~crc, p, n);
}

uint32_t fx_spool_crc32c(uint32_t crc, const void *p, size_t n)
{
#ifdef HAVE_CRC_HW
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc_hw(~crc, p, n);
#endif
    return ~crc_sw(~crc, p, n);
}

/* The checksum covers the header up to the crc field, then the payload. */
static uint32_t record_crc(const unsigned char *rec, size_t plen)
{
    return fx_spool_crc32c(fx_spool_crc32c(0, rec, 20), rec + HDR, plen);
}

static void put_header(unsigned char *rec, int type, size_t plen, uint64_t seq)
{
    memcpy(rec, rec_magic, 4);
    rec[4] = (unsigned char)type;
    rec[5] = REC_VERSION;
    put16(rec + 6, 0);
    put32(rec + 8, (uint32_t)plen);
    put64(rec + 12, seq);
}

static void seal(unsigned char *rec, size_t plen)
{
    put32(rec + 20, record_crc(rec, plen));
}

static size_t event_record_size(const fx_spool_event *ev, size_t reason_len)
{
    return HDR + EV_FIXED + ev->topic_len + ev->key_len + ev->value_len + reason_len;
}

static unsigned char *put_bytes(unsigned char *p, const void *src, size_t n)
{
    if (n)
        memcpy(p, src, n);
    return p + n;
}

/* Writes an event (type 1) or dead letter (type 3) record of event_record_size() bytes. */
static void encode_event(unsigned char *rec, int type, uint64_t seq, const fx_spool_event *ev, const char *reason,
                         size_t reason_len)
{
    size_t plen = event_record_size(ev, reason_len) - HDR;
    put_header(rec, type, plen, seq);
    unsigned char *p = rec + HDR;
    put64(p, ev->created_ms);
    put16(p + 8, (uint16_t)ev->topic_len);
    put16(p + 10, (uint16_t)reason_len);
    put32(p + 12, (uint32_t)ev->key_len);
    put32(p + 16, (uint32_t)ev->value_len);
    p = put_bytes(p + EV_FIXED, ev->topic, ev->topic_len);
    p = put_bytes(p, ev->key, ev->key_len);
    p = put_bytes(p, ev->value, ev->value_len);
    put_bytes(p, reason, reason_len);
    seal(rec, plen);
}

typedef struct rec {
    int type;
    uint64_t seq;
    fx_spool_event ev;          /* types 1 and 3 */
    const char *reason;         /* type 3 */
    size_t reason_len;
    const unsigned char *seqs;  /* type 2 */
    size_t nseqs;
} rec;

static long invalid(const char **why, const char *what)
{
    *why = what;
    return -1;
}

/*
 * One record at b[0..len): its size, 0 (a proper prefix of something that may be
 * valid: *need is the size it claims, or HDR while the length is not there yet) or -1.
 */
static long decode(const unsigned char *b, size_t len, rec *r, const char **why, size_t *need)
{
    *need = HDR;
    *why = NULL;
    if (len == 0)
        return 0;
    if (memcmp(b, rec_magic, len < 4 ? len : 4) != 0)
        return invalid(why, "bad magic");
    if (len > 4 && (b[4] < FX_SPOOL_REC_EVENT || b[4] > FX_SPOOL_REC_DEAD))
        return invalid(why, "unknown record type");
    if (len > 5 && b[5] != REC_VERSION)
        return invalid(why, "unknown record version");
    if (len > 7 && (b[6] || b[7]))
        return invalid(why, "bad header (reserved bytes not zero)");
    if (len < 12)
        return 0;
    int type = b[4];
    size_t plen = get32(b + 8);
    if (type == FX_SPOOL_REC_DONE) {
        if (plen == 0 || plen % 8 || plen > 8 * (size_t)FX_SPOOL_MAX_DONE)
            return invalid(why, "bad length (done marks)");
    } else if (plen < EV_FIXED || plen > MAX_EVENT_PAYLOAD) {
        return invalid(why, "bad length");
    }
    *need = HDR + plen;
    size_t tl = 0, rl = 0, kl = 0, vl = 0;
    if (type != FX_SPOOL_REC_DONE && len >= HDR + EV_FIXED) {
        const unsigned char *p = b + HDR;
        tl = get16(p + 8);
        rl = get16(p + 10);
        kl = get32(p + 12);
        vl = get32(p + 16);
        if (tl == 0 || tl > FX_SPOOL_MAX_TOPIC)
            return invalid(why, "bad topic length");
        if (type == FX_SPOOL_REC_EVENT && rl)
            return invalid(why, "bad reason length (an event has none)");
        if (kl > FX_SPOOL_MAX_KEY)
            return invalid(why, "bad key length");
        if (vl > FX_SPOOL_MAX_VALUE)
            return invalid(why, "bad value length");
        if (EV_FIXED + tl + kl + vl + rl != plen)
            return invalid(why, "bad length (the field lengths do not add up)");
    }
    if (len < HDR + plen)
        return 0;
    if (get32(b + 20) != record_crc(b, plen))
        return invalid(why, "bad checksum");
    uint64_t seq = get64(b + 12);
    if (type == FX_SPOOL_REC_DONE ? seq != 0 : (seq == 0 || seq >= SEQ_LIMIT))
        return invalid(why, "bad sequence number");
    memset(r, 0, sizeof(*r));
    r->type = type;
    r->seq = seq;
    if (type == FX_SPOOL_REC_DONE) {
        r->seqs = b + HDR;
        r->nseqs = plen / 8;
    } else {
        const char *p = (const char *)b + HDR + EV_FIXED;
        r->ev.seq = seq;
        r->ev.created_ms = get64(b + HDR);
        r->ev.topic = p;
        r->ev.topic_len = tl;
        r->ev.key = p + tl;
        r->ev.key_len = kl;
        r->ev.value = p + tl + kl;
        r->ev.value_len = vl;
        r->reason = p + tl + kl + vl;
        r->reason_len = rl;
    }
    return (long)(HDR + plen);
}

long fx_spool_decode(const unsigned char *buf, size_t len, int *type, fx_spool_event *ev,
                     const unsigned char **seqs, size_t *nseqs, const char **why)
{
    rec r;
    const char *w;
    size_t need;
    long n = decode(buf, len, &r, &w, &need);
    if (why)
        *why = w;
    if (n <= 0)
        return n;
    if (type)
        *type = r.type;
    if (ev && r.type != FX_SPOOL_REC_DONE)
        *ev = r.ev;
    if (seqs)
        *seqs = r.seqs;
    if (nseqs)
        *nseqs = r.nseqs;
    return n;
}

long fx_spool_decode_dead(const unsigned char *buf, size_t len, fx_spool_event *ev, const char **reason,
                          size_t *reason_len, const char **why)
{
    rec r;
    const char *w;
    size_t need;
    long n = decode(buf, len, &r, &w, &need);
    if (n > 0 && r.type != FX_SPOOL_REC_DEAD) {
        n = -1;
        w = "not a dead-letter record";
    }
    if (why)
        *why = w;
    if (n <= 0)
        return n;
    if (ev)
        *ev = r.ev;
    if (reason)
        *reason = r.reason;
    if (reason_len)
        *reason_len = r.reason_len;
    return n;
}

/* The next offset >= from where a valid record starts, or len. */
static size_t resync(const unsigned char *b, size_t len, size_t from)
{
    size_t p = from;
    while (p < len) {
        const unsigned char *m = memmem(b + p, len - p, rec_magic, sizeof(rec_magic));
        if (!m)
            return len;
        p = (size_t)(m - b);
        rec r;
        const char *why;
        size_t need;
        if (decode(b + p, len - p, &r, &why, &need) > 0)
            return p;
        p++;
    }
    return len;
}

/* ---- the spool ----------------------------------------------------------------------- */

typedef struct seg {
    uint64_t num;
    uint64_t size;   /* bytes written and synced: the good length */
    uint64_t undone; /* its events not marked done (buffered ones included) */
    int fd;          /* open for writing, or -1 */
    bool exists;     /* the file is there (found at open, or created by a commit) */
} seg;

typedef struct run {
    uint64_t lo, n; /* seqs lo .. lo + n - 1 */
    uint64_t seg;   /* the segment holding them */
    uint64_t *bits; /* 1 = not done yet */
    size_t words;   /* allocated */
} run;

typedef struct chunk {
    uint64_t seg;    /* segment the bytes go to */
    size_t off, len; /* in buf */
} chunk;

struct fx_spool {
    char *dir;
    int dirfd, lockfd, deadfd;
    seg *segs; /* by number; the last one takes appends */
    size_t nsegs, segcap;
    run *runs; /* by seq */
    size_t nruns, runcap;
    unsigned char *buf; /* records not yet written */
    size_t buflen, bufcap;
    chunk *chunks;
    size_t nchunks, chunkcap;
    uint64_t *doneq; /* done marks not yet encoded */
    size_t ndone, donecap;
    uint64_t next_seq;
    uint64_t undone;
    uint64_t disk;      /* sum of the segments' good lengths */
    bool dir_dirty;     /* a file was created or deleted since the directory was synced */
    uint64_t bytes_now; /* fx_spool_bytes_now: __atomic relaxed */
    uint64_t segment_bytes; /* rotation size (fx_spool_set_segment_bytes) */
};

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem)
            return NULL;
        nc *= 2;
    }
    void *q = realloc(p, nc * elem);
    if (q)
        *cap = nc;
    return q;
}

/* Drops the first drop of n elements (memmove only when something moves: the
 * arrays may still be NULL). */
static void drop_front(void *base, size_t drop, size_t n, size_t elem)
{
    if (drop && drop < n)
        memmove(base, (char *)base + drop * elem, (n - drop) * elem);
}

static void seg_name(char out[32], uint64_t num)
{
    snprintf(out, 32, "seg-%016" PRIx64 ".log", num);
}

static seg *seg_find(fx_spool *s, uint64_t num)
{
    size_t lo = 0, hi = s->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->segs[mid].num < num)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->nsegs && s->segs[lo].num == num ? &s->segs[lo] : NULL;
}

static seg *newest(fx_spool *s)
{
    return &s->segs[s->nsegs - 1];
}

/* The number the next new segment gets (see spool.h). */
static uint64_t next_seg_num(fx_spool *s)
{
    uint64_t n = s->nsegs ? newest(s)->num + 1 : 1;
    return n > s->next_seq ? n : s->next_seq;
}

/* Capacity is ensured by the caller. */
static seg *seg_push(fx_spool *s, uint64_t num, bool exists)
{
    seg *g = &s->segs[s->nsegs++];
    *g = (seg){.num = num, .fd = -1, .exists = exists};
    return g;
}

static uint64_t buffered_done_bytes(const fx_spool *s)
{
    uint64_t recs = (s->ndone + FX_SPOOL_MAX_DONE - 1) / FX_SPOOL_MAX_DONE;
    return recs * HDR + (uint64_t)s->ndone * 8;
}

static void bytes_update(fx_spool *s)
{
    __atomic_store_n(&s->bytes_now, s->disk + s->buflen + buffered_done_bytes(s), __ATOMIC_RELAXED);
}

/* The run holding seq, or NULL. */
static run *run_find(fx_spool *s, uint64_t seq)
{
    size_t lo = 0, hi = s->nruns;
    while (lo < hi) { /* first run with lo > seq */
        size_t mid = lo + (hi - lo) / 2;
        if (s->runs[mid].lo <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    run *r = &s->runs[lo - 1];
    return seq - r->lo < r->n ? r : NULL;
}

static bool pending(fx_spool *s, uint64_t seq)
{
    run *r = run_find(s, seq);
    if (!r)
        return false;
    uint64_t i = seq - r->lo;
    return (r->bits[i / 64] >> (i % 64)) & 1;
}

/* Makes room for seq (greater than every seq so far) in segment segnum, so that
 * run_set cannot fail. */
static int run_ensure(fx_spool *s, uint64_t seq, uint64_t segnum)
{
    run *last = s->nruns ? &s->runs[s->nruns - 1] : NULL;
    if (!last || last->seg != segnum || last->lo + last->n != seq) {
        if (last && last->n == 0) { /* left by an earlier failure: reuse it */
            last->lo = seq;
            last->seg = segnum;
        } else {
            run *q = grow(s->runs, &s->runcap, s->nruns + 1, sizeof(run));
            if (!q)
                return -1;
            s->runs = q;
            last = &s->runs[s->nruns++];
            *last = (run){.lo = seq, .seg = segnum};
        }
    }
    size_t need = (size_t)(last->n / 64 + 1);
    if (need > last->words) {
        size_t nw = last->words ? last->words * 2 : 4;
        if (nw < need)
            nw = need;
        uint64_t *b = realloc(last->bits, nw * sizeof(uint64_t));
        if (!b)
            return -1;
        memset(b + last->words, 0, (nw - last->words) * sizeof(uint64_t));
        last->bits = b;
        last->words = nw;
    }
    return 0;
}

/* After run_ensure(s, seq, segnum): seq is pending in segnum. */
static void run_set(fx_spool *s, uint64_t seq, seg *g)
{
    run *r = &s->runs[s->nruns - 1];
    uint64_t i = seq - r->lo;
    r->n = i + 1;
    r->bits[i / 64] |= UINT64_C(1) << (i % 64);
    g->undone++;
    s->undone++;
}

/* Clears seq's bit; true when it was pending. */
static bool mark_done(fx_spool *s, uint64_t seq)
{
    run *r = run_find(s, seq);
    if (!r)
        return false;
    uint64_t i = seq - r->lo, m = UINT64_C(1) << (i % 64);
    if (!(r->bits[i / 64] & m))
        return false;
    r->bits[i / 64] &= ~m;
    seg *g = seg_find(s, r->seg);
    if (g && g->undone)
        g->undone--;
    s->undone--;
    return true;
}

/* ---- buffer ---------------------------------------------------------------------- */

/* Buffered bytes bound for the newest segment. */
static size_t newest_pending(fx_spool *s)
{
    if (s->nchunks && s->chunks[s->nchunks - 1].seg == newest(s)->num)
        return s->chunks[s->nchunks - 1].len;
    return 0;
}

/* Whether a record of size bytes starts a new segment: never in an empty one, so a
 * record larger than a segment gets one of its own. */
static bool must_rotate(fx_spool *s, size_t size)
{
    uint64_t used = newest(s)->size + newest_pending(s);
    return used > 0 && used + size > s->segment_bytes;
}

void fx_spool_set_segment_bytes(fx_spool *s, uint64_t bytes)
{
    if (bytes < FX_SPOOL_MIN_SEGMENT_BYTES)
        bytes = FX_SPOOL_MIN_SEGMENT_BYTES;
    if (bytes > FX_SPOOL_SEGMENT_BYTES)
        bytes = FX_SPOOL_SEGMENT_BYTES;
    s->segment_bytes = bytes;
}

/* Room for size more bytes, a chunk and a segment, so that buffer_take cannot fail. */
static int buffer_ensure(fx_spool *s, size_t size)
{
    if (size > SIZE_MAX - s->buflen)
        return -1;
    void *p = grow(s->buf, &s->bufcap, s->buflen + size, 1);
    if (!p)
        return -1;
    s->buf = p;
    if (!(p = grow(s->chunks, &s->chunkcap, s->nchunks + 1, sizeof(chunk))))
        return -1;
    s->chunks = p;
    if (!(p = grow(s->segs, &s->segcap, s->nsegs + 1, sizeof(seg))))
        return -1;
    s->segs = p;
    return 0;
}

/* Appends size bytes to the buffer (in a new segment when rotate) and returns them. */
static unsigned char *buffer_take(fx_spool *s, size_t size, bool rotate)
{
    if (rotate)
        seg_push(s, next_seg_num(s), false);
    uint64_t num = newest(s)->num;
    if (!s->nchunks || s->chunks[s->nchunks - 1].seg != num)
        s->chunks[s->nchunks++] = (chunk){.seg = num, .off = s->buflen, .len = 0};
    s->chunks[s->nchunks - 1].len += size;
    unsigned char *p = s->buf + s->buflen;
    s->buflen += size;
    return p;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int check_event(const fx_spool *s, const fx_spool_event *ev, char *err, size_t errlen)
{
    if (!ev->topic || ev->topic_len == 0)
        return fail(err, errlen, "spool %s: event without a topic", s->dir);
    if (ev->topic_len > FX_SPOOL_MAX_TOPIC)
        return fail(err, errlen, "spool %s: topic of %zu bytes is longer than Kafka's limit of %d bytes", s->dir,
                    ev->topic_len, FX_SPOOL_MAX_TOPIC);
    if (ev->key_len > FX_SPOOL_MAX_KEY)
        return fail(err, errlen, "spool %s: event key of %zu bytes is longer than the limit of %u bytes", s->dir,
                    ev->key_len, FX_SPOOL_MAX_KEY);
    if (ev->value_len > FX_SPOOL_MAX_VALUE)
        return fail(err, errlen, "spool %s: event value of %zu bytes is longer than the limit of %u bytes", s->dir,
                    ev->value_len, FX_SPOOL_MAX_VALUE);
    if ((!ev->key && ev->key_len) || (!ev->value && ev->value_len))
        return fail(err, errlen, "spool %s: event with a NULL key or value of non-zero length", s->dir);
    return 0;
}

int fx_spool_append(fx_spool *s, fx_spool_event *ev, char *err, size_t errlen)
{
    if (check_event(s, ev, err, errlen) < 0)
        return -1;
    if (s->next_seq >= SEQ_LIMIT)
        return fail(err, errlen, "spool %s: out of sequence numbers", s->dir);
    size_t size = event_record_size(ev, 0);
    bool rotate = must_rotate(s, size);
    uint64_t seq = s->next_seq;
    uint64_t segnum = rotate ? next_seg_num(s) : newest(s)->num;
    if (buffer_ensure(s, size) < 0 || run_ensure(s, seq, segnum) < 0)
        return fail(err, errlen, "spool %s: out of memory buffering an event of %zu bytes", s->dir, size);
    unsigned char *p = buffer_take(s, size, rotate);
    encode_event(p, FX_SPOOL_REC_EVENT, seq, ev, NULL, 0);
    run_set(s, seq, newest(s));
    ev->seq = seq;
    s->next_seq++;
    bytes_update(s);
    return 0;
}

void fx_spool_done(fx_spool *s, uint64_t seq)
{
    if (!pending(s, seq))
        return;
    uint64_t *q = grow(s->doneq, &s->donecap, s->ndone + 1, sizeof(uint64_t));
    if (!q)
        return; /* left undone: produced again after a restart (at least once) */
    s->doneq = q;
    mark_done(s, seq);
    s->doneq[s->ndone++] = seq;
    bytes_update(s);
}

/* ---- commit --------------------------------------------------------------------- */

static int sync_dir(fx_spool *s, char *err, size_t errlen)
{
    if (!s->dir_dirty)
        return 0;
    if (fsync(s->dirfd) < 0)
        return fail(err, errlen, "spool %s: syncing the directory: %s", s->dir, strerror(errno));
    s->dir_dirty = false;
    return 0;
}

static int create_seg(fx_spool *s, seg *g, char *err, size_t errlen)
{
    char name[32];
    seg_name(name, g->num);
    int fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(err, errlen, "spool %s: creating %s: %s", s->dir, name, strerror(errno));
    g->fd = fd;
    g->exists = true;
    s->dir_dirty = true;
    return 0;
}

/* Writes and syncs one chunk; on failure the file is cut back to its good length. */
static int write_chunk(fx_spool *s, const chunk *c, char *err, size_t errlen)
{
    seg *g = seg_find(s, c->seg);
    char name[32];
    seg_name(name, c->seg);
    if (!g->exists && create_seg(s, g, err, errlen) < 0)
        return -1;
    if (g->fd < 0 && (g->fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC)) < 0)
        return fail(err, errlen, "spool %s: opening %s: %s", s->dir, name, strerror(errno));
    /* the file's name must be durable before its data counts */
    if (sync_dir(s, err, errlen) < 0)
        return -1;
    const char *what = "writing";
    size_t done = 0;
    while (done < c->len) {
        ssize_t w = pwrite(g->fd, s->buf + c->off + done, c->len - done, (off_t)(g->size + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            goto failed;
        }
        done += (size_t)w;
    }
    what = "syncing";
    if (fdatasync(g->fd) < 0)
        goto failed;
    g->size += c->len;
    s->disk += c->len;
    return 0;
failed:;
    int e = errno;
    /* no partial record may stay behind looking like the start of one; if this fails
     * too, the next attempt overwrites the same bytes from the good length */
    if (ftruncate(g->fd, (off_t)g->size) < 0)
        fx_log(FX_LOG_WARN, "spool %s: cutting %s back to %" PRIu64 " bytes: %s", s->dir, name, g->size,
               strerror(errno));
    return fail(err, errlen, "spool %s: %s %zu bytes to %s: %s (kept in memory, retried at the next commit)",
                s->dir, what, c->len, name, strerror(e));
}

/* Deletes segments that are done, oldest first, never the newest. */
static void delete_done_prefix(fx_spool *s)
{
    size_t k = 0;
    while (k + 1 < s->nsegs && s->segs[k].undone == 0) {
        seg *g = &s->segs[k];
        char name[32];
        seg_name(name, g->num);
        if (g->exists && unlinkat(s->dirfd, name, 0) < 0 && errno != ENOENT) {
            fx_log(FX_LOG_WARN, "spool %s: deleting %s: %s", s->dir, name, strerror(errno));
            break;
        }
        if (g->fd >= 0)
            close(g->fd);
        s->disk -= g->size;
        s->dir_dirty = true;
        k++;
    }
    if (!k)
        return;
    drop_front(s->segs, k, s->nsegs, sizeof(seg));
    s->nsegs -= k;
    size_t j = 0;
    while (j < s->nruns && s->runs[j].seg < s->segs[0].num)
        free(s->runs[j++].bits);
    drop_front(s->runs, j, s->nruns, sizeof(run));
    s->nruns -= j;
}

/* After a successful commit (nothing buffered): close what takes no more writes,
 * rotate an idle all-done newest segment, delete the done prefix. Best effort. */
static void housekeeping(fx_spool *s)
{
    for (size_t i = 0; i + 1 < s->nsegs; i++)
        if (s->segs[i].fd >= 0) {
            close(s->segs[i].fd);
            s->segs[i].fd = -1;
        }
    char err[256];
    if (s->undone == 0 && newest(s)->size >= IDLE_ROTATE_BYTES) {
        seg *q = grow(s->segs, &s->segcap, s->nsegs + 1, sizeof(seg));
        if (q) {
            s->segs = q;
            seg *g = seg_push(s, next_seg_num(s), false);
            if (create_seg(s, g, err, sizeof(err)) < 0) {
                fx_log(FX_LOG_WARN, "%s", err);
                s->nsegs--;
            } else if (sync_dir(s, err, sizeof(err)) < 0) {
                fx_log(FX_LOG_WARN, "%s", err);
            }
        }
    }
    delete_done_prefix(s);
    if (sync_dir(s, err, sizeof(err)) < 0)
        fx_log(FX_LOG_WARN, "%s", err);
}

int fx_spool_commit(fx_spool *s, char *err, size_t errlen)
{
    while (s->ndone) {
        size_t n = s->ndone < FX_SPOOL_MAX_DONE ? s->ndone : FX_SPOOL_MAX_DONE;
        size_t size = HDR + 8 * n;
        bool rotate = must_rotate(s, size);
        if (buffer_ensure(s, size) < 0)
            return fail(err, errlen, "spool %s: out of memory writing done marks", s->dir);
        unsigned char *p = buffer_take(s, size, rotate);
        put_header(p, FX_SPOOL_REC_DONE, 8 * n, 0);
        for (size_t i = 0; i < n; i++)
            put64(p + HDR + 8 * i, s->doneq[i]);
        seal(p, 8 * n);
        drop_front(s->doneq, n, s->ndone, sizeof(uint64_t));
        s->ndone -= n;
    }
    size_t i = 0, written = 0;
    int rc = 0;
    for (; i < s->nchunks; i++) {
        if (write_chunk(s, &s->chunks[i], err, errlen) < 0) {
            rc = -1;
            break;
        }
        written += s->chunks[i].len;
    }
    /* what was written leaves the buffer; the rest stays for the next commit */
    drop_front(s->buf, written, s->buflen, 1);
    s->buflen -= written;
    drop_front(s->chunks, i, s->nchunks, sizeof(chunk));
    s->nchunks -= i;
    for (size_t k = 0; k < s->nchunks; k++)
        s->chunks[k].off -= written;
    if (rc == 0) {
        if (s->bufcap > BUF_KEEP_BYTES) { /* a burst or a huge event: do not keep its memory */
            free(s->buf);
            s->buf = NULL;
            s->bufcap = 0;
        }
        housekeeping(s);
    }
    bytes_update(s);
    return rc;
}

/* ---- quarantine ------------------------------------------------------------------ */

int fx_spool_quarantine(fx_spool *s, const fx_spool_event *ev, const char *reason, char *err, size_t errlen)
{
    if (check_event(s, ev, err, errlen) < 0)
        return -1;
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > FX_SPOOL_MAX_REASON)
        rlen = FX_SPOOL_MAX_REASON;
    uint64_t seq = ev->seq && ev->seq < SEQ_LIMIT ? ev->seq : 1; /* a record never has seq 0 */
    size_t size = event_record_size(ev, rlen);
    unsigned char *out = malloc(size);
    if (!out)
        return fail(err, errlen, "spool %s: out of memory quarantining an event of %zu bytes", s->dir, size);
    encode_event(out, FX_SPOOL_REC_DEAD, seq, ev, reason, rlen);
    const char *what = "opening";
    struct stat st;
    off_t at = 0;
    size_t done = 0;
    int e;
    if (s->deadfd < 0) {
        int fd = openat(s->dirfd, DEAD_NAME, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            s->dir_dirty = true;
        else if (errno == EEXIST)
            fd = openat(s->dirfd, DEAD_NAME, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            goto failed;
        s->deadfd = fd;
    }
    what = "syncing the directory for";
    if (s->dir_dirty && fsync(s->dirfd) < 0)
        goto failed;
    s->dir_dirty = false;
    what = "writing";
    if (fstat(s->deadfd, &st) < 0)
        goto failed;
    at = st.st_size;
    while (done < size) {
        ssize_t w = pwrite(s->deadfd, out + done, size - done, at + (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            goto cut;
        }
        done += (size_t)w;
    }
    what = "syncing";
    if (fdatasync(s->deadfd) < 0)
        goto cut;
    free(out);
    return 0;
cut:
    e = errno;
    if (ftruncate(s->deadfd, at) < 0)
        fx_log(FX_LOG_WARN, "spool %s: cutting %s back to %lld bytes: %s", s->dir, DEAD_NAME, (long long)at,
               strerror(errno));
    errno = e;
failed:
    e = errno;
    free(out);
    return fail(err, errlen, "spool %s: %s %s: %s", s->dir, what, DEAD_NAME, strerror(e));
}

/* ---- accessors ----------------------------------------------------------------------- */

uint64_t fx_spool_bytes(const fx_spool *s)
{
    return s->disk + s->buflen + buffered_done_bytes(s);
}

uint64_t fx_spool_bytes_now(const fx_spool *s)
{
    return __atomic_load_n(&s->bytes_now, __ATOMIC_RELAXED);
}

uint64_t fx_spool_undone(const fx_spool *s)
{
    return s->undone;
}

const char *fx_spool_dir(const fx_spool *s)
{
    return s->dir;
}

/* ---- open, recovery, close --------------------------------------------------------- */

static void spool_free(fx_spool *s)
{
    for (size_t i = 0; i < s->nsegs; i++)
        if (s->segs[i].fd >= 0)
            close(s->segs[i].fd);
    for (size_t i = 0; i < s->nruns; i++)
        free(s->runs[i].bits);
    if (s->deadfd >= 0)
        close(s->deadfd);
    if (s->lockfd >= 0)
        close(s->lockfd); /* releases the flock */
    if (s->dirfd >= 0)
        close(s->dirfd);
    free(s->segs);
    free(s->runs);
    free(s->buf);
    free(s->chunks);
    free(s->doneq);
    free(s->dir);
    free(s);
}

void fx_spool_close(fx_spool *s)
{
    if (!s)
        return;
    char err[512];
    if ((s->buflen || s->ndone) && fx_spool_commit(s, err, sizeof(err)) < 0)
        fx_log(FX_LOG_ERROR, "%s; closing anyway: the events appended since the last successful commit "
                             "were never spooled", err);
    spool_free(s);
}

/* mkdir -p, mode 0700 for what it creates. */
static int make_dirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return -1;
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *c = '/';
    }
    int rc = mkdir(p, 0700) < 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Segment numbers in the directory, sorted. */
static int list_segments(fx_spool *s, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int fd = dup(s->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        if (strlen(nm) != 24 || strncmp(nm, "seg-", 4) != 0 || strcmp(nm + 20, ".log") != 0)
            continue;
        uint64_t num = 0;
        bool ok = true;
        for (int i = 4; i < 20 && ok; i++) {
            int c = nm[i];
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            ok = v >= 0;
            num = num << 4 | (uint64_t)(v & 15);
        }
        if (!ok || num == 0 || num >= SEQ_LIMIT)
            continue; /* not a name this spool writes */
        uint64_t *q = grow(*out, &cap, *n + 1, sizeof(uint64_t));
        if (!q) {
            rc = -1;
            errno = ENOMEM;
            break;
        }
        *out = q;
        (*out)[(*n)++] = num;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof(uint64_t), cmp_u64);
    return rc;
}

static int read_file(int dirfd, const char *name, unsigned char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size, n = 0;
    unsigned char *b = malloc(cap ? cap : 1);
    if (!b) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    while (n < cap) {
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break; /* shorter than fstat said: take what is there */
        n += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = n;
    return 0;
}

typedef struct scan {
    fx_spool *s;
    int pass;          /* 1: learn and report, 2: hand over */
    uint64_t last_seq; /* highest event seq taken (pass 1) or handed over (pass 2) */
    fx_spool_undone_fn undone;
    fx_spool_damage_fn damage;
    void *arg;
    bool oom;
} scan;

static void report(scan *sc, const char *name, uint64_t off, uint64_t len, const char *why)
{
    if (sc->pass == 1 && sc->damage)
        sc->damage(sc->arg, name, off, len, why);
}

static void take_record(scan *sc, seg *g, const char *name, const rec *r, size_t off, size_t n)
{
    fx_spool *s = sc->s;
    if (r->type == FX_SPOOL_REC_DEAD) {
        report(sc, name, off, n, "a dead-letter record in a segment (skipped)");
        return;
    }
    if (r->type == FX_SPOOL_REC_DONE) {
        if (sc->pass == 1)
            for (size_t i = 0; i < r->nseqs; i++)
                mark_done(s, get64(r->seqs + 8 * i));
        return;
    }
    if (r->seq <= sc->last_seq) {
        if (sc->pass == 1) {
            char why[128];
            snprintf(why, sizeof(why),
                     "sequence number %" PRIu64 " is not above %" PRIu64 " (a repeated record, skipped)", r->seq,
                     sc->last_seq);
            report(sc, name, off, n, why);
        }
        return;
    }
    if (sc->pass == 2) {
        if (pending(s, r->seq)) {
            sc->last_seq = r->seq;
            if (sc->undone)
                sc->undone(sc->arg, &r->ev);
        }
        return;
    }
    if (run_ensure(s, r->seq, g->num) < 0) {
        sc->oom = true;
        return;
    }
    run_set(s, r->seq, g);
    sc->last_seq = r->seq;
}

static void scan_segment(scan *sc, seg *g, const unsigned char *b, size_t len)
{
    char name[32];
    seg_name(name, g->num);
    size_t off = 0;
    while (off < len && !sc->oom) {
        rec r;
        const char *why;
        size_t need;
        long n = decode(b + off, len - off, &r, &why, &need);
        if (n > 0) {
            take_record(sc, g, name, &r, off, (size_t)n);
            off += (size_t)n;
            continue;
        }
        size_t next = resync(b, len, off + 1);
        char msg[96];
        if (n == 0 && next == len) {
            if (len - off < 12)
                snprintf(msg, sizeof(msg), "truncated record header: %zu of %u bytes", len - off, HDR);
            else
                snprintf(msg, sizeof(msg), "truncated record: %zu of %zu bytes", len - off, need);
            why = msg;
        } else if (n == 0) {
            why = "bad length (the record runs into the next valid one)";
        }
        report(sc, name, off, next - off, why);
        off = next;
    }
}

/* "spool DIR: what [name]: errno text" */
static fx_spool *open_failed(fx_spool *s, char *err, size_t errlen, const char *what, const char *name, int e)
{
    fail(err, errlen, "spool %s: %s%s%s: %s", s->dir, what, name ? " " : "", name ? name : "", strerror(e));
    spool_free(s);
    return NULL;
}

fx_spool *fx_spool_open(const char *dir, fx_spool_undone_fn undone, fx_spool_damage_fn damage, void *arg,
                        char *err, size_t errlen)
{
    fx_spool *s = calloc(1, sizeof(*s));
    if (s)
        s->segment_bytes = FX_SPOOL_SEGMENT_BYTES;
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        fail(err, errlen, "spool %s: out of memory", dir);
        return NULL;
    }
    s->dirfd = s->lockfd = s->deadfd = -1;
    if (make_dirs(dir) < 0)
        return open_failed(s, err, errlen, "cannot create the directory", NULL, errno);
    if ((s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return open_failed(s, err, errlen, "cannot open the directory", NULL, errno);
    if ((s->lockfd = openat(s->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return open_failed(s, err, errlen, "the directory is not writable: creating", LOCK_NAME, errno);
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK) {
            fail(err, errlen, "spool %s: in use by another gateway (%s/%s is locked); give each gateway its own "
                 "events.spool_dir", dir, dir, LOCK_NAME);
            spool_free(s);
            return NULL;
        }
        return open_failed(s, err, errlen, "locking", LOCK_NAME, errno);
    }

    uint64_t *nums;
    size_t nnums;
    if (list_segments(s, &nums, &nnums) < 0)
        return open_failed(s, err, errlen, "listing the directory", NULL, errno);
    if (!(s->segs = grow(NULL, &s->segcap, nnums + 1, sizeof(seg)))) {
        free(nums);
        return open_failed(s, err, errlen, "listing the directory", NULL, ENOMEM);
    }
    for (size_t i = 0; i < nnums; i++)
        seg_push(s, nums[i], true);
    free(nums);

    /* pass 1: damage, events, done marks */
    scan sc = {.s = s, .pass = 1, .undone = undone, .damage = damage, .arg = arg};
    for (size_t i = 0; i < s->nsegs; i++) {
        seg *g = &s->segs[i];
        char name[32];
        seg_name(name, g->num);
        unsigned char *b;
        size_t len;
        if (read_file(s->dirfd, name, &b, &len) < 0)
            return open_failed(s, err, errlen, "reading", name, errno);
        g->size = len;
        s->disk += len;
        scan_segment(&sc, g, b, len);
        free(b);
        if (sc.oom)
            return open_failed(s, err, errlen, "recovering", name, ENOMEM);
    }
    s->next_seq = sc.last_seq + 1;
    if (s->nsegs && newest(s)->num > s->next_seq)
        s->next_seq = newest(s)->num;

    /* appends go to a new segment, created now so that its name keeps the seqs used */
    seg *g = seg_push(s, next_seg_num(s), false);
    if (create_seg(s, g, err, errlen) < 0 || sync_dir(s, err, errlen) < 0) {
        spool_free(s);
        return NULL;
    }

    /* pass 2: hand over what is still undone, in seq order */
    sc.pass = 2;
    sc.last_seq = 0;
    for (size_t i = 0; i + 1 < s->nsegs; i++) {
        if (!s->segs[i].undone)
            continue;
        char name[32];
        seg_name(name, s->segs[i].num);
        unsigned char *b;
        size_t len;
        if (read_file(s->dirfd, name, &b, &len) < 0)
            return open_failed(s, err, errlen, "reading", name, errno);
        scan_segment(&sc, &s->segs[i], b, len);
        free(b);
    }
    delete_done_prefix(s);
    if (sync_dir(s, err, errlen) < 0)
        fx_log(FX_LOG_WARN, "%s", err);
    bytes_update(s);
    return s;
}
