/* store/consumeq.h - the consume-queue index: (queue id, queue offset) -> where a record lives.
 *
 * One instance per shard, owned and called by that shard's thread only (no locks, no atomics).
 * It indexes the shard's commit log: each message record is appended to the queue of its exact
 * topic and to the queue of every wildcard filter a persistent session holds that matches it.
 * A session's progress in a queue is one number, the queue offset, so an offline session costs
 * offsets, not copies (DESIGN 5). This module does not read the log, match topics, or know
 * sessions: the caller says which queues a record goes to and reads records itself.
 *
 * Shape: a small LSM tree of fixed-size entries, built for millions of queues of few entries.
 *   - A queue table in memory: per queue its id, its next offset (its length) and its head
 *     offset (nothing below it is readable). About 32 bytes per queue, open addressing.
 *   - A write buffer ("memtable") of up to `flush_entries` entries in append order, each queue's
 *     entries chained newest to oldest, so a read of a queue never scans the whole buffer.
 *   - Immutable sorted runs on disk: files of 4 KiB blocks of entries sorted by (queue id, queue
 *     offset), then blocks of queue records (id, next offset, head offset) for every queue whose
 *     state changed since the previous run. In memory a run costs its fd and one fence key (the
 *     first key of each entry block, 16 bytes per 102 entries); entry blocks are read with
 *     pread (the page cache is the block cache) and verified on every read.
 *   - Compaction merges runs, keeps the newest queue record per queue, and drops every entry
 *     whose log position is below the GC watermark (the oldest log offset retention kept), of a
 *     dropped queue, or below its queue's head offset.
 * There is no file per queue: a run holds every queue's entries. Measured (tests/unit/
 * test_consumeq.c, a million queues of 1-3 entries, after a full compaction): 56 bytes of disk
 * and 36 bytes of memory per entry, 71 bytes of memory per queue.
 *
 * Files: consumeq.c (table, buffer, appends, reads, flush, open), consumeq_compact.c (merges),
 * consumeq_pub.c (publication),
 * consumeq_run.c (the run file format); consumeq_impl.h and consumeq_run.h are internal.
 *
 * Ordering rules the caller must keep (they make queue offsets and recovery deterministic):
 *   - consumeq_append, consumeq_create and consumeq_drop are called in log order: when the
 *     record (message or session record) that causes them is written, and again, in the same
 *     order, when recovery replays the log. A record's log offset never decreases across
 *     appends (several queues may get the same record).
 *   - Within a queue, offsets are 0, 1, 2, ... in append order, so both the queue offset and the
 *     log offset of a queue's entries increase together. Entries below the GC watermark are
 *     therefore always a prefix of a queue.
 *   - Only records that are durable in the log are appended (after the group commit's flush has
 *     passed them), so a run never covers a record that a crash could cut from the log's torn
 *     tail. At recovery the caller checks that the checkpoint is not beyond the log's recovered
 *     end; if it is (the rule was broken), the index is treated as corrupt and rebuilt.
 *
 * Queue ids. A queue id is 64 bits: consumeq_queue_id(CONSUMEQ_KIND_TOPIC, "a/b") for the
 * exact topic "a/b", consumeq_queue_id(CONSUMEQ_KIND_FILTER, "a/+") for a wildcard filter. It is
 * xxh3-64 of the name seeded with the kind, so a topic and a filter spelled alike never share an
 * id; 0 is reserved (never a queue id). The index stores no names. Two names whose ids collide
 * (probability about n^2 / 2^65: 3e-8 for a million queues) share one queue; delivery stays
 * correct because readers decode each record anyway and check its topic against their topic or
 * filter, and `topic_hash` in each entry lets an exact-topic reader skip foreign entries without
 * reading the record. Ids are persisted: xxh3's output has been frozen since xxHash 0.8.0, and
 * every run stores a probe hash so a library whose xxh3 differs is detected at open
 * (-EBADMSG, rebuild) instead of silently losing queues.
 *
 * Queue lifetime. Exact-topic queues are implicit: consumeq_append creates a missing queue.
 * Filter queues are created by consumeq_create when a persistent session first subscribes and
 * removed by consumeq_drop when none holds them. A dropped queue keeps a 32-byte tombstone
 * (its next offset) until a full compaction has removed its entries from every run; creating it
 * again before that continues its numbering at the old next offset (so stale entries stay
 * invisible), after that it starts at 0. create and drop are idempotent, so replay is safe.
 * (Nobody holds offsets in a dropped queue, so which of the two numberings a re-created queue
 * gets matters to no one; a crash and replay reproduce it exactly, a rebuild may not.)
 *
 * Memory. Allocated at open: the write buffer (flush_entries + CONSUMEQ_RECORD_QUEUES_MAX
 * entries of 48 bytes with their chain link and flush scratch, plus 8 bytes each for the
 * changed-queue list) and 97 blocks of I/O buffers (388 KiB). The queue table starts at 1024 slots and doubles
 * (under 3/4 load) up to what queue_max needs; fences grow with the runs (0.16 B an entry).
 *
 * Durability and recovery. Nothing is durable until a run is written: consumeq_flush (called
 * by the caller, or by append itself when the write buffer or the changed-queue list is full)
 * writes the buffer as one run together with the checkpoint, `covered_off`: every record below
 * it is indexed in this run or an older one. consumeq_open loads the runs and returns the
 * checkpoint; the caller replays the log from it (append for message records, create/drop for
 * session records) and the index is as before the crash. A run is written to a temp name,
 * fsynced, renamed, and the directory fsynced: a crash leaves the old or the new set of runs,
 * never a half run that is read (leftover temp files are deleted at open). A corrupt run (bad
 * magic, version, size, checksum, order, or a missing run in the sequence) makes consumeq_open
 * report it and return -EBADMSG; the caller's rebuild is consumeq_wipe, consumeq_open (the
 * checkpoint is then 0) and a replay of the whole retained log. Queue offsets after a rebuild
 * restart at 0 from the oldest retained record; a session that also kept the log offset of its
 * position can find its new queue offset with consumeq_seek_log.
 *
 * Publication. A flush or merge writes its run to a temp file (page cache) and uses it at
 * once; making it durable under its name - fsync, rename, fsync of the directory - is a
 * separate step. With a ring attached (consumeq_attach_ring, the shard's) those three go
 * through the ring as linked operations, one run at a time in sequence order, while the shard
 * goes on (consumeq_on_io takes the completions; a merge's inputs are
 * unlinked, through the ring too, once its output is published). Until then a crash leaves the previous runs and
 * their checkpoint, and recovery replays more of the log: nothing is lost, since the index is
 * derived from the log. A failed publication is reported and stops further ones (a later run
 * would leave a gap in the sequence); the on-disk index then stays at its last published run.
 * Without a ring (tests, tools) runs are published at once with blocking calls.
 *
 * Known limitations of this version:
 *   - Writing a run (pwrite into the page cache) and reading runs (pread) are blocking calls
 *     on the calling shard. A merge runs in bounded steps (consumeq_compact_step), each with
 *     its block reads and writes.
 *   - A read costs one pread per run that may hold the queue (no bloom filters yet); the number
 *     of runs is bounded by CONSUMEQ_RUN_MAX and kept low by compaction.
 *   - Reading a queue's newest entries walks its chain in the write buffer (up to
 *     flush_entries links for a hot topic).
 *   - consumeq_seek_log walks the queue's write-buffer chain once (like a read of its newest
 *     entries) before its binary search over the runs.
 *   - Runs are written in the host byte order and the module requires little-endian.
 */
#ifndef KEELMQ_STORE_CONSUMEQ_H
#define KEELMQ_STORE_CONSUMEQ_H

#include <sys/types.h>

#include "core/base.h"

struct io_uring;

/* Limits (STYLE 7). Config values are checked against them in consumeq_open. */
/* Write buffer: 1.5 MiB at 48 B an entry. A flush writes its run on the shard's loop in one
 * go, and its fsync puts that much ahead of the next log datasync: 131072 entries (6 MiB)
 * stalled commits for up to 9 ms, 16384 flushed and merged more often for no better tail
 * (docs/benchmarks.md, "Durable commit latency inside the broker"). */
#define CONSUMEQ_FLUSH_ENTRIES_DEFAULT 32768u
#define CONSUMEQ_FLUSH_ENTRIES_MIN 16u
#define CONSUMEQ_FLUSH_ENTRIES_MAX (1u << 22)
#define CONSUMEQ_QUEUE_MAX_DEFAULT (1u << 23)   /* queues (tombstones included) per shard */
#define CONSUMEQ_QUEUE_MAX_MAX (1u << 28)
#define CONSUMEQ_RUN_MAX 32u                    /* runs per index; a flush compacts first at it */
/* Auto compaction merges all runs past this. Size tiering keeps the run count logarithmic in
 * the index size, well below it; merging everything more often rewrote the whole index every
 * few flushes under a steady ingest (measured: a third of a shard's CPU at 1 M entries/s). */
#define CONSUMEQ_COMPACT_TRIGGER_DEFAULT 24u
#define CONSUMEQ_READ_MAX 4096u                 /* entries per consumeq_read call */
#define CONSUMEQ_RECORD_QUEUES_MAX 4096u        /* queues one record may be appended to */
#define CONSUMEQ_DIR_LEN_MAX 200u               /* bytes of the directory path */
#define CONSUMEQ_OFF_NONE UINT64_MAX            /* "no offset" in results */

STATIC_ASSERT(CONSUMEQ_COMPACT_TRIGGER_DEFAULT < CONSUMEQ_RUN_MAX, "compaction before the cap");
STATIC_ASSERT(CONSUMEQ_FLUSH_ENTRIES_MAX <= UINT32_MAX / 2, "buffer indexes are 32-bit");

/* One index entry: where queue `queue_id`'s `queue_off`-th message lives. 40 bytes, the same
 * layout in memory and on disk. */
struct consumeq_entry {
    uint64_t queue_id;
    uint64_t queue_off;
    uint64_t log_off;        /* log offset of the record's first byte */
    uint64_t timestamp_ns;   /* the record's timestamp (wall clock) */
    uint32_t record_len;     /* the record's total length in the log */
    uint32_t topic_hash;     /* consumeq_topic_hash of the record's topic */
};
STATIC_ASSERT(sizeof(struct consumeq_entry) == 40, "fixed-size entries");

/* What the caller knows about a record when it indexes it. */
struct consumeq_record {
    uint64_t log_off;
    uint64_t timestamp_ns;
    uint32_t record_len;
    uint32_t topic_hash;
};

enum consumeq_kind {
    CONSUMEQ_KIND_TOPIC = 't',   /* the queue of one exact topic name */
    CONSUMEQ_KIND_FILTER = 'f',  /* the queue of one wildcard filter */
    CONSUMEQ_KIND_P2P = 'p',     /* the P2P queue of one client id (core/iot.h); implicit */
};

/* Called with one line about a problem found on disk (corrupt run, leftover temp file, failed
 * unlink). `line` is valid during the call only. */
typedef void (*consumeq_report_fn)(void *ctx, const char *line);

struct consumeq_config {
    const char *dir;                 /* borrowed during open; must exist (store.dir/shard-N) */
    uint32_t flush_entries;          /* write buffer size in entries; 0 = default */
    uint32_t queue_max;              /* queues, tombstones included; 0 = default */
    uint32_t compact_trigger;        /* runs before auto compaction merges all; 0 = default */
    consumeq_report_fn report;       /* may be NULL */
    void *report_ctx;
};

/* What consumeq_open found. */
struct consumeq_open_info {
    uint64_t covered_off;   /* replay the log from here (0: replay everything) */
    uint64_t gc_off;        /* the GC watermark persisted with the runs */
    uint32_t run_count;
    uint64_t entry_count;   /* entries on disk */
    uint64_t queue_count;   /* queues loaded, tombstones included */
    uint32_t temp_files_removed;
    uint32_t obsolete_runs_removed;  /* inputs of a compaction that crashed after its rename */
};

struct consumeq_stats {
    uint64_t queue_count;       /* live queues */
    uint64_t tombstone_count;   /* dropped queues still in the table */
    uint64_t mem_entry_count;   /* entries in the write buffer */
    uint64_t disk_entry_count;  /* entries in runs (GC'd ones not yet compacted included) */
    uint32_t run_count;
    uint64_t disk_bytes;        /* bytes of run files */
    uint64_t memory_bytes;      /* queue table + write buffer + fences + buffers */
    uint64_t covered_off;
    uint64_t gc_off;
    uint64_t flushes;
    uint64_t compactions;
    uint64_t publications;           /* runs made durable under their name */
    uint32_t publications_waiting;   /* runs written and in use, not yet published */
    uint64_t entries_dropped_gc;     /* by compaction, below the watermark */
    uint64_t entries_dropped_queue;  /* by flush or compaction, of dropped queues */
};

struct consumeq;

#define CONSUMEQ_IO_UNLINK 1u  /* or-ed into user_data: an obsolete run's unlink */

/* Publication through `ring` (the calling shard's), or with blocking calls when NULL (also
 * from then on for what still waits). Its operations are prepared in the ring as runs are
 * written and published (the caller submits them with its own); their completions carry
 * `user_data` and go to consumeq_on_io. Not while consumeq_busy. */
void consumeq_attach_ring(struct consumeq *q, struct io_uring *ring, uint64_t user_data);
/* A completion of the index's operations: `user_data` is the one given to
 * consumeq_attach_ring, possibly with CONSUMEQ_IO_UNLINK or-ed in (the caller passes the
 * completion's user_data as it came). */
void consumeq_on_io(struct consumeq *q, uint64_t user_data, int res);
/* True while a publication is in the ring. A shard stops only once it is false, then
 * detaches the ring (NULL) before its last flush and consumeq_close. */
bool consumeq_busy(const struct consumeq *q);

/* The queue id of `name` (borrowed) of `kind`; never 0. Stable across restarts. */
uint64_t consumeq_queue_id(enum consumeq_kind kind, struct slice name);

/* The 32-bit hash stored in entries for a record's topic: the high half of the topic's queue
 * id, so an exact-topic reader compares entry.topic_hash with (queue_id >> 32). */
uint32_t consumeq_topic_hash(struct slice topic);

/* Opens the index in `cfg->dir`: removes leftover temp files and runs made obsolete by a
 * finished compaction, verifies every run (header, size, every block's checksum, key order),
 * loads the queue table and fills *info. Returns 0 and the index in *out (caller owns it; free
 * with consumeq_close), -EINVAL for a bad config, -EBADMSG when a run is corrupt (reported
 * through cfg->report; nothing is opened: rebuild with consumeq_wipe), -ENOSPC when the runs
 * hold more queues than queue_max, -ENOMEM, or -errno. */
int consumeq_open(const struct consumeq_config *cfg, struct consumeq **out,
                  struct consumeq_open_info *info);

/* Frees the index (takes ownership of `q`). Does not flush: what is in the write buffer is
 * lost, exactly as in a crash, and is recovered by replay. Call consumeq_flush first for a
 * clean shutdown. */
void consumeq_close(struct consumeq *q);

/* Deletes every file of the index in `dir` (borrowed; runs and temp files) and fsyncs `dir`.
 * The rebuild path after -EBADMSG. Reports one line when `report` is not NULL. Returns 0 or
 * -errno. */
int consumeq_wipe(const char *dir, consumeq_report_fn report, void *report_ctx);

/* Creates queue `queue_id` (non-zero) if it does not exist. Returns 0 if created, 1 if it
 * already existed, -ENOSPC when the table is at queue_max, or a flush error (see append). */
int consumeq_create(struct consumeq *q, uint64_t queue_id);

/* Drops queue `queue_id`: reads of it fail with -ENOENT, its entries are discarded by later
 * flushes and compactions. Returns 0, -ENOENT if it does not exist, or a flush error. */
int consumeq_drop(struct consumeq *q, uint64_t queue_id);

/* Whether `queue_id` exists and is not dropped. */
bool consumeq_exists(const struct consumeq *q, uint64_t queue_id);

/* Appends `rec` (borrowed) to queue `queue_id`, creating the queue if it does not exist, and
 * stores the entry's queue offset in *queue_off. Call it once per queue the record goes to,
 * all with the same `rec->log_off`. When the write buffer holds flush_entries entries and
 * `rec` starts a new record, the buffer is flushed first (blocking I/O, see the limitations)
 * with the checkpoint at `rec->log_off`; a flush never splits one record's appends, so the
 * buffer has CONSUMEQ_RECORD_QUEUES_MAX entries of slack. Returns 0, -ENOSPC when the queue
 * table is at queue_max, -ENOBUFS when one record went to more queues than the slack, or the
 * flush's -errno; on error nothing was appended. A record that starts before the end of the
 * previous one or below the checkpoint breaks log order: a programmer error (asserted). */
int consumeq_append(struct consumeq *q, uint64_t queue_id, const struct consumeq_record *rec,
                    uint64_t *queue_off);

/* Reads queue `queue_id` from offset `from_off`: up to `cap` (<= CONSUMEQ_READ_MAX) entries
 * into `out` (borrowed), in increasing queue offset, from runs and the write buffer. Entries
 * below the GC watermark or the queue's head are skipped, so the first entry's queue_off may
 * be above `from_off`: the difference is what retention removed (the caller counts the loss).
 * Returns the count (0: nothing at or after `from_off`), -ENOENT for a missing or dropped
 * queue, -EBADMSG for a block that fails its checksum (reported), or -errno. */
ssize_t consumeq_read(struct consumeq *q, uint64_t queue_id, uint64_t from_off,
                      struct consumeq_entry *out, uint32_t cap);

/* The next offset of `queue_id` (its length: the offset the next append gets), or
 * CONSUMEQ_OFF_NONE if it does not exist or was dropped. */
uint64_t consumeq_next_off(const struct consumeq *q, uint64_t queue_id);

/* Stores in *oldest_off the lowest offset of `queue_id` still readable (the next offset if
 * none is). Returns 0, -ENOENT, or a read error. */
int consumeq_oldest_off(struct consumeq *q, uint64_t queue_id, uint64_t *oldest_off);

/* Stores in *queue_off the first readable offset of `queue_id` (as consumeq_read sees them:
 * not below the GC watermark or the head) whose entry's log offset is >= `log_off`, or the
 * next offset if none. A binary search over queue offsets (they grow with log offsets): about
 * log2(queue length) + (number of runs) block reads, plus one walk of the queue's write-buffer
 * chain; cheap enough for every catch-up start. Returns 0, -ENOENT
 * for a missing or dropped queue, or a read error (-EBADMSG reported, or -errno). */
int consumeq_seek_log(struct consumeq *q, uint64_t queue_id, uint64_t log_off,
                      uint64_t *queue_off);

/* Raises the GC watermark to `gc_off` (never lowers it): entries whose log offset is below it
 * are no longer read and are dropped by the next compactions. Persisted with the next run. */
void consumeq_set_gc(struct consumeq *q, uint64_t gc_off);

/* Writes the write buffer and the changed queue states as one run with the checkpoint
 * `covered_off`. Call it between records (never between two appends of one record). The caller
 * promises every record below `covered_off` was given to append, create or drop; it is raised
 * to the end of the last appended record and never moves back, so 0 means "what was appended".
 * A caller that also writes records the index does not see (session records, padding) may pass
 * the durable log end (a record boundary) to save their replay. Compacts first if the run
 * count is at CONSUMEQ_RUN_MAX. Writes nothing if nothing changed since the last run. Returns 0
 * or -errno (the buffer is kept, the old runs stay in use; a later flush retries). */
int consumeq_flush(struct consumeq *q, uint64_t covered_off);

enum consumeq_compact_mode {
    CONSUMEQ_COMPACT_AUTO = 0,   /* merge only if the policy says so */
    CONSUMEQ_COMPACT_FULL = 1,   /* merge every run into one */
};

/* Flushes (so call it between records, e.g. on the shard's tick), then merges runs: in AUTO
 * mode the newest runs of similar size (size tiering), or all runs when there are more than
 * compact_trigger or the oldest run is mostly below the GC watermark; in FULL mode all runs
 * (a single run only if it holds garbage). A full merge also forgets the tombstones of dropped
 * queues. Returns 1 if it merged, 0 if there was nothing to do, or -errno (the old runs stay
 * in use; -EBADMSG if a block went bad since open). */
int consumeq_compact(struct consumeq *q, enum consumeq_compact_mode mode);

/* The same as consumeq_compact(AUTO), in the background: flushes and, if a merge is due and
 * none is in progress, starts it. Returns 1 if it started one, 0 if not, or -errno. The merge
 * is carried out by consumeq_compact_step; meanwhile appends, flushes and reads go on (the
 * inputs serve reads until the merged run replaces them). consumeq_compact, a flush that finds
 * CONSUMEQ_RUN_MAX runs, and consumeq_close (which abandons it) deal with one in progress. */
int consumeq_compact_start(struct consumeq *q);
/* A bounded step of the merge in progress (CONSUMEQ_MERGE_STEP_ITEMS entries or queue records;
 * the block reads and writes they need). Returns 1 while work remains, 0 when none is in
 * progress or it just completed, or -errno (reported; the inputs stay in use). */
int consumeq_compact_step(struct consumeq *q);

/* Fills *out (borrowed) with counts and sizes; cheap (a loop over the runs). */
void consumeq_stats(const struct consumeq *q, struct consumeq_stats *out);

#endif
