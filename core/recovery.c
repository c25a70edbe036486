/* core/recovery.c - startup scan of every shard's commit log. Main thread only.
 *
 * Retained messages: every RECORD_MESSAGE with the retain flag is an update of its topic. The
 * logs of different shards interleave in time, so updates are ordered by their timestamps (as
 * the shards order them at run time, core/router.c); within one log, later records win ties.
 * The messages built here belong to no shard (owner SHARD_NONE); shards clone what they keep.
 */
#include "core/recovery.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/retain.h"
#include "core/topic.h"
#include "store/commitlog.h"

#define RECOVERY_OWNER 0xFFFFu /* not a shard: memory of the main thread */
#define RECOVERY_SHARD_MAX 256

struct scan_ctx {
    struct recovery *r;
    uint16_t shard;
    uint64_t skipped;
};

static void report(void *ctx, const char *line)
{
    struct scan_ctx *sc = ctx;
    LOG_ERROR("store", "shard_log=%u %s", sc->shard, line);
}

/* Keeps `m` as the newest retained update of its topic if it is newer than what is held. */
static int keep_retained(struct recovery *r, struct msg *m)
{
    struct msg *old = retain_get(r->index, m->topic);
    if (old != NULL && old->time_ns > m->time_ns) {
        msg_release(m);
        return 0;
    }
    int err = 0;
    struct msg *prev = retain_set(r->index, m->topic, m, &err);
    if (err != 0) {
        msg_release(m);
        return err;
    }
    if (prev != NULL)
        msg_release(prev);
    return 0;
}

static int on_record(void *ctx, uint64_t off, const uint8_t *p, const struct record_header *h)
{
    (void)off;
    struct scan_ctx *sc = ctx;
    if (h->type != RECORD_MESSAGE || !(h->flags & RECORD_FLAG_RETAIN))
        return 0;
    struct record_message rm;
    struct mqtt_props props = { 0 };
    if (!record_decode_message(p, h, &rm) || !topic_name_valid(rm.topic) ||
        (rm.props.len > 0 && codec_publish_props_decode(rm.props, &props) != MQTT_RC_SUCCESS)) {
        sc->skipped++; /* Checksummed but not ours to understand: never crash on disk bytes. */
        return 0;
    }
    if (rm.props.len == 0)
        props.raw = (struct slice){ NULL, 0 };
    struct msg *m = msg_create(rm.topic, rm.payload, rm.props.len > 0 ? &props : NULL,
                               rm.client_id, rm.qos, true, sc->shard);
    if (m == NULL)
        return -ENOMEM;
    m->owner_shard = RECOVERY_OWNER;
    m->time_ns = rm.timestamp_ns;
    return keep_retained(sc->r, m);
}

/* The number of shard logs present: max(shard.count, highest shard-N directory + 1). */
static uint16_t count_logs(const char *store_dir, uint32_t shard_count)
{
    uint32_t count = shard_count;
    DIR *d = opendir(store_dir);
    if (d == NULL)
        return (uint16_t)count;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned n;
        char tail;
        if (sscanf(e->d_name, "shard-%u%c", &n, &tail) == 1 && n < RECOVERY_SHARD_MAX)
            count = MAX(count, n + 1);
    }
    closedir(d);
    return (uint16_t)count;
}

static void collect_one(void *ctx, struct slice topic, void *value)
{
    (void)topic;
    struct recovery *r = ctx;
    struct msg *m = value;
    if (m->payload.len == 0)
        return; /* A clear: nothing to restore. */
    if (r->retained_count == r->retained_cap) {
        uint32_t cap = r->retained_cap ? r->retained_cap * 2 : 64;
        struct msg **n = realloc(r->retained, cap * sizeof(*n));
        if (n == NULL)
            return; /* Reported by the caller through the count mismatch. */
        r->retained = n;
        r->retained_cap = cap;
    }
    r->retained[r->retained_count++] = msg_ref(m);
}

/* Lists the newest non-empty update of every topic, '$' topics included. */
static void collect_retained(struct recovery *r)
{
    retain_walk_all(r->index, collect_one, r);
}

int recovery_run(struct recovery *r, const struct config *cfg, char *err, size_t err_len)
{
    memset(r, 0, sizeof(*r));
    r->count = count_logs(cfg->store_dir, cfg->shard_count);
    r->shards = calloc(r->count, sizeof(*r->shards));
    r->index = retain_create();
    if (r->shards == NULL || r->index == NULL) {
        snprintf(err, err_len, "out of memory for recovery");
        return -ENOMEM;
    }
    for (uint16_t i = 0; i < r->count; i++) {
        char dir[COMMITLOG_DIR_MAX];
        snprintf(dir, sizeof(dir), "%s/shard-%u", cfg->store_dir, i);
        struct scan_ctx sc = { .r = r, .shard = i };
        uint64_t t0 = base_now_ms();
        struct segment_scan *scan = &r->shards[i].scan;
        int rc = segment_scan(dir, 0, on_record, &sc, report, scan, err, err_len);
        if (rc == -ENOENT) {
            memset(scan, 0, sizeof(*scan));
            continue; /* A new shard: no log yet. */
        }
        if (rc != 0)
            return rc < 0 ? rc : -EIO;
        r->shards[i].end_off = scan->end_off;
        LOG_INFO("store",
                 "recovered shard_log=%u segments=%u records=%llu bytes=%llu cut_bytes=%llu "
                 "corrupt_regions=%u unreadable_records=%llu end=%llu ms=%llu",
                 i, scan->segments, (unsigned long long)scan->records,
                 (unsigned long long)scan->bytes, (unsigned long long)scan->cut_bytes,
                 scan->corrupt_regions, (unsigned long long)sc.skipped,
                 (unsigned long long)scan->end_off, (unsigned long long)(base_now_ms() - t0));
    }
    collect_retained(r);
    if (r->retained_count > 0)
        LOG_INFO("store", "recovered retained=%u", r->retained_count);
    return 0;
}

static void release_value(void *ctx, void *value)
{
    (void)ctx;
    msg_release(value);
}

void recovery_free(struct recovery *r)
{
    for (uint32_t i = 0; i < r->retained_count; i++)
        msg_release(r->retained[i]);
    free(r->retained);
    if (r->index != NULL)
        retain_destroy(r->index, release_value, NULL);
    free(r->shards);
    memset(r, 0, sizeof(*r));
}
