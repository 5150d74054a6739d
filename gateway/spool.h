/*
 * spool.h — the events' on-disk log: every change event is appended here
 * before it is produced to Kafka, and marked done when its delivery report
 * says the broker has it. After a crash or a broker outage, the events not
 * marked done are produced again.
 *
 * One writer: the events thread (events.c) owns an fx_spool and is the only
 * caller of every function below except fx_spool_bytes_now(), which any
 * thread may call (workers check "is the spool full?" before forwarding).
 *
 * On disk (spool_dir):
 *   seg-<16 hex digits>.log   segments, numbered in order; appends go to the
 *                             newest; a new one starts past FX_SPOOL_SEGMENT_BYTES
 *                             and at every open (never append after a tail
 *                             that recovery found damaged)
 *   dead-letter.log           quarantined events (same record format, plus the
 *                             reason), never read back by ficus
 * A record is a fixed header — magic, type, length, CRC-32C of header and
 * payload, sequence number — then the payload. Types: an event (topic, key,
 * value, creation time), or done marks (a list of sequence numbers). Sequence
 * numbers start at 1 and grow by one per event over the life of the spool
 * directory (they never go back; a reopen may skip a few).
 *
 * Record layout, every integer little-endian (FX_SPOOL_HEADER_BYTES = 24):
 *   0  magic      ff 46 58 53 ("\xff" "FXS"; 0xff never occurs in UTF-8 text)
 *   4  type       u8: 1 event, 2 done marks, 3 dead letter
 *   5  version    u8: 1
 *   6  reserved   u16, 0
 *   8  length     u32, payload bytes after the header
 *  12  seq        u64: the event's sequence number (types 1 and 3), 0 (type 2)
 *  20  crc        u32, CRC-32C (Castagnoli) of bytes 0..19 then the payload
 * Event payload (types 1 and 3), 20 bytes then the strings, no padding:
 *   0  created_ms u64
 *   8  topic_len  u16, 1..FX_SPOOL_MAX_TOPIC
 *  10  reason_len u16, 0 in an event; the reason's length in a dead letter
 *  12  key_len    u32, 0..FX_SPOOL_MAX_KEY
 *  16  value_len  u32, 0..FX_SPOOL_MAX_VALUE
 *  20  topic, key, value, reason; the lengths add up to the record's length
 * Done-marks payload: 1..FX_SPOOL_MAX_DONE sequence numbers, u64 each.
 *
 * Recovery reads segments oldest first. Bytes that do not decode are reported
 * as one damaged range each, up to the next offset where a record decodes
 * (magic, plausible lengths, checksum); a record whose sequence number does
 * not grow (a duplicate) is reported and skipped too. Segment numbers: a new
 * segment gets max(next sequence number, newest segment + 1), and the newest
 * segment is never deleted (an idle one that is all done is replaced by an
 * empty one once it holds 64 KiB), so the newest file name bounds the
 * sequence numbers already used even when every event was delivered.
 *
 * Group commit: appends and done marks are buffered in memory; one
 * fx_spool_commit() writes them all with one write and makes them durable
 * with one fdatasync. An event counts as spooled only after the commit.
 *
 * Space: a segment is deleted once it and every older segment hold no
 * undone event (oldest first, so a done mark never outlives the event it
 * names). fx_spool_bytes() is the size of all segment files plus what is
 * buffered.
 */
#ifndef FX_SPOOL_H
#define FX_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define FX_SPOOL_SEGMENT_BYTES (16u * 1024 * 1024)
#define FX_SPOOL_MIN_SEGMENT_BYTES (64u * 1024)
/* Longest topic (Kafka's limit), key and value a record may hold. */
#define FX_SPOOL_MAX_TOPIC 249
#define FX_SPOOL_MAX_KEY (64u * 1024)
#define FX_SPOOL_MAX_VALUE (128u * 1024 * 1024)
/* A quarantine reason longer than this is cut (it is a sentence). */
#define FX_SPOOL_MAX_REASON 65535u
/* Sequence numbers per done-marks record (a commit writes as many as needed). */
#define FX_SPOOL_MAX_DONE 8192u
#define FX_SPOOL_HEADER_BYTES 24u

typedef struct fx_spool fx_spool;

/* One event as the spool stores it. Pointers are borrowed (valid during the
 * call that hands the struct over). */
typedef struct fx_spool_event {
    uint64_t seq;              /* set by fx_spool_append; read by recovery */
    uint64_t created_ms;       /* Unix time in ms when the gateway made it */
    const char *topic;
    size_t topic_len;
    const char *key;
    size_t key_len;
    const char *value;         /* the CloudEvent JSON */
    size_t value_len;
} fx_spool_event;

/* Recovery hands over each undone event, in sequence order. */
typedef void (*fx_spool_undone_fn)(void *arg, const fx_spool_event *ev);
/* Recovery reports each damaged range it skipped: file name (no directory),
 * byte offset and length of the range, and what was wrong (a sentence:
 * "truncated record: 37 of 120 bytes", "bad checksum", "bad length", ...). */
typedef void (*fx_spool_damage_fn)(void *arg, const char *file, uint64_t offset, uint64_t len, const char *why);

/*
 * Opens (creating if needed, mode 0700) the spool directory, reads every
 * segment, and calls `undone` for each event without a done mark and
 * `damage` for each damaged range (scanning resumes at the next valid
 * record). Segments left with nothing undone are deleted. Returns NULL with
 * a sentence in err (naming the path and errno text) when the directory
 * cannot be used (not creatable, not writable, a second gateway holds it:
 * the directory is locked with flock on "spool.lock" for the life of the
 * spool), or a segment cannot be read; events already handed over are then
 * to be dropped (the next open hands them over again). Either callback may be
 * NULL; the damage reports come before the first event.
 */
fx_spool *fx_spool_open(const char *dir, fx_spool_undone_fn undone, fx_spool_damage_fn damage, void *arg,
                        char *err, size_t errlen);

/* Buffers one event; sets ev->seq. 0, or -1 with err set (too large: limits above). */
int fx_spool_append(fx_spool *s, fx_spool_event *ev, char *err, size_t errlen);
/* Buffers a done mark for seq (unknown or already-done seqs are ignored). */
void fx_spool_done(fx_spool *s, uint64_t seq);
/*
 * Writes what is buffered (one write(2) per segment touched, rotating
 * segments as needed), fdatasync()s, then deletes the segments that are
 * wholly done. 0, or -1 with err set; after an error the buffered records
 * stay buffered and the next commit tries again (nothing is dropped).
 */
int fx_spool_commit(fx_spool *s, char *err, size_t errlen);
/* Appends the event with its reason to dead-letter.log and fsyncs it (a record
 * of type 3 with ev->seq; reasons are cut at FX_SPOOL_MAX_REASON bytes; the file
 * is not counted in fx_spool_bytes). The caller marks it done afterwards. 0, or
 * -1 with err set (a failed write is cut back, the file holds whole records). */
int fx_spool_quarantine(fx_spool *s, const fx_spool_event *ev, const char *reason, char *err, size_t errlen);

/*
 * The size past which appends start a new segment (default and maximum
 * FX_SPOOL_SEGMENT_BYTES, at least FX_SPOOL_MIN_SEGMENT_BYTES). A spool bounded
 * to B bytes should rotate at a fraction of B: the newest segment is deleted
 * only after it was rotated away, so under steady traffic the spool holds up
 * to about two segments even when Kafka keeps up.
 */
void fx_spool_set_segment_bytes(fx_spool *s, uint64_t bytes);

/* Bytes on disk plus buffered (events thread). */
uint64_t fx_spool_bytes(const fx_spool *s);
/* The same, readable from any thread (relaxed atomic, updated by the writer). */
uint64_t fx_spool_bytes_now(const fx_spool *s);
/* Events appended and not yet marked done. */
uint64_t fx_spool_undone(const fx_spool *s);
const char *fx_spool_dir(const fx_spool *s);

/* Commits what is buffered (best effort), closes files, releases the lock. */
void fx_spool_close(fx_spool *s);

/*
 * The record decoder, exposed for the fuzz harness and the unit tests: reads
 * one record at buf[0..len). Returns its total size (> 0) and fills *type
 * (1 event, 2 done marks, 3 dead letter) and *ev (event or dead letter:
 * pointers into buf) or *seqs and *nseqs (done marks: a pointer into buf,
 * little-endian u64s, *nseqs of them); 0 when more bytes are needed (every
 * proper prefix of a valid record gives 0); -1 when the bytes there are not
 * a valid record (*why says why). Never reads outside buf[0..len). Output
 * pointers may be NULL.
 */
enum { FX_SPOOL_REC_EVENT = 1, FX_SPOOL_REC_DONE = 2, FX_SPOOL_REC_DEAD = 3 };
long fx_spool_decode(const unsigned char *buf, size_t len, int *type, fx_spool_event *ev,
                     const unsigned char **seqs, size_t *nseqs, const char **why);
/* The same for one dead-letter.log record: -1 also when it is not a dead letter;
 * *reason points into buf. */
long fx_spool_decode_dead(const unsigned char *buf, size_t len, fx_spool_event *ev, const char **reason,
                          size_t *reason_len, const char **why);

/* CRC-32C (Castagnoli) of p[0..n), continuing crc (0 to start): the SSE4.2
 * instruction when the CPU has it, else a table. _portable always uses the table
 * (the unit test compares the two). */
uint32_t fx_spool_crc32c(uint32_t crc, const void *p, size_t n);
uint32_t fx_spool_crc32c_portable(uint32_t crc, const void *p, size_t n);

#endif
