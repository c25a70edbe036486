/* store/consumeq_pub.c - publishing the consume-queue index's runs: making a run that was
 * written (store/consumeq_run.c) durable under its name, and removing the inputs a merge made
 * obsolete. See "Publication" in store/consumeq.h.
 *
 * A FIFO of runs waiting to be published, one at a time in the order they were written, so the
 * directory never holds a run whose predecessor in sequence is missing. With a ring attached,
 * the head goes out as three linked operations - fsync of the run, rename from its temp name,
 * fsync of the directory - and consumeq_on_io takes their completions; without one each run is
 * published at once with blocking calls. One shard's thread only.
 */
#include "store/consumeq_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PUB_OPS 3u /* fsync, rename, directory fsync */

STATIC_ASSERT(CONSUMEQ_PUB_MAX >= CONSUMEQ_RUN_MAX + 2, "a queued publication per run, the one "
              "in flight and a merge's");

static void consumeq_pump(struct consumeq *q);

/* The final path of run [first, last] (and its temp path when `tmp` is non-NULL). */
static void pub_paths(const struct consumeq *q, uint64_t first, uint64_t last,
                      char final[CONSUMEQ_RUN_PATH_LEN], char *tmp)
{
    char name[CONSUMEQ_RUN_NAME_LEN];
    consumeq_run_name(first, last, name, sizeof(name));
    int n = snprintf(final, CONSUMEQ_RUN_PATH_LEN, "%s/%s", q->dir, name);
    ASSERT(n > 0 && n < (int)CONSUMEQ_RUN_PATH_LEN);
    if (tmp != NULL) {
        n = snprintf(tmp, CONSUMEQ_RUN_PATH_LEN, "%s.tmp", final);
        ASSERT(n > 0 && n < (int)CONSUMEQ_RUN_PATH_LEN);
    }
}

static struct consumeq_pub *pub_at(struct consumeq *q, uint32_t i)
{
    ASSERT(i < q->pub_count);
    return &q->pubs[i];
}

/* Drops the head (published, or abandoned): closes its descriptor. */
static void pub_pop(struct consumeq *q)
{
    struct consumeq_pub *p = pub_at(q, 0);
    (void)close(p->fd); /* a duplicate descriptor: the data's fate was decided by its fsync */
    memmove(&q->pubs[0], &q->pubs[1], (q->pub_count - 1) * sizeof(q->pubs[0]));
    q->pub_count--;
}

static void unlink_result(struct consumeq *q, int res)
{
    /* ENOENT: an input that was merged away before it was published. A lost unlink does no
     * harm: open removes obsolete runs. */
    if (res < 0 && res != -ENOENT)
        consumeq_report(q, "consumeq: unlink of an obsolete run failed: %s", strerror(-res));
}

/* The head was published: its name is durable in the directory; the runs it replaced go,
 * through the ring when it has room (unlinking a file costs milliseconds), else here. */
static void pub_done(struct consumeq *q)
{
    struct consumeq_pub *p = pub_at(q, 0);
    bool by_ring = q->ring != NULL && q->unlinks_in_flight == 0 &&
                   io_uring_sq_space_left(q->ring) >= p->obsolete_count;
    for (uint32_t i = 0; i < p->obsolete_count; i++) {
        char *path = q->unlink_paths[i];
        pub_paths(q, p->obsolete[i].first_seq, p->obsolete[i].last_seq, path, NULL);
        if (!by_ring) {
            unlink_result(q, unlink(path) == -1 ? -errno : 0);
            continue;
        }
        struct io_uring_sqe *sqe = io_uring_get_sqe(q->ring);
        io_uring_prep_unlinkat(sqe, AT_FDCWD, path, 0); /* the path is read at submit */
        io_uring_sqe_set_data64(sqe, q->ring_user_data | CONSUMEQ_IO_UNLINK);
        q->unlinks_in_flight++;
    }
    q->publications++;
    pub_pop(q);
}

/* Stops publishing: what is on disk stays at the last published run (publishing a later one
 * would leave a gap in the sequence), and recovery replays the log from its checkpoint. The
 * publication in flight, if any, still completes. */
static void pub_stop(struct consumeq *q, uint64_t first_seq, uint64_t last_seq, int err)
{
    consumeq_report(q, "consumeq: run %llu-%llu cannot be published: %s; the index on disk "
                    "stays at its last published run (the log is replayed from there at start)",
                    (unsigned long long)first_seq, (unsigned long long)last_seq, strerror(-err));
    q->pub_failed = true;
    uint32_t keep = q->pub_count > 0 && q->pubs[0].in_flight ? 1 : 0;
    while (q->pub_count > keep) {
        struct consumeq_pub *p = &q->pubs[q->pub_count - 1];
        char final[CONSUMEQ_RUN_PATH_LEN];
        char tmp[CONSUMEQ_RUN_PATH_LEN];
        pub_paths(q, p->first_seq, p->last_seq, final, tmp);
        (void)close(p->fd);
        (void)unlink(tmp); /* best effort: open removes temp files too */
        q->pub_count--;
    }
}

static void pub_fail(struct consumeq *q, int err)
{
    struct consumeq_pub *p = pub_at(q, 0);
    uint64_t first = p->first_seq;
    uint64_t last = p->last_seq;
    p->in_flight = false;
    pub_stop(q, first, last, err);
}

bool consumeq_pub_waiting(const struct consumeq *q, const struct consumeq_run *run)
{
    for (uint32_t i = 0; i < q->pub_count; i++)
        if (q->pubs[i].first_seq == run->meta.first_seq &&
            q->pubs[i].last_seq == run->meta.last_seq)
            return true;
    return false;
}

/* Publishes the head with blocking calls. */
static int pub_sync(struct consumeq *q)
{
    struct consumeq_pub *p = pub_at(q, 0);
    ASSERT(!p->in_flight);
    pub_paths(q, p->first_seq, p->last_seq, q->pub_final, q->pub_tmp);
    int rc = consumeq_run_publish(p->fd, q->pub_tmp, q->pub_final, q->dir);
    if (rc != 0) {
        pub_fail(q, rc);
        return rc;
    }
    pub_done(q);
    return 0;
}

/* Removes queued (not in flight) publication `i`: it never happens. */
static void pub_remove(struct consumeq *q, uint32_t i)
{
    struct consumeq_pub *p = pub_at(q, i);
    ASSERT(!p->in_flight);
    char final[CONSUMEQ_RUN_PATH_LEN];
    char tmp[CONSUMEQ_RUN_PATH_LEN];
    pub_paths(q, p->first_seq, p->last_seq, final, tmp);
    (void)close(p->fd); /* never to be published */
    (void)unlink(tmp);  /* best effort: open removes temp files too */
    memmove(&q->pubs[i], &q->pubs[i + 1], (q->pub_count - i - 1) * sizeof(q->pubs[0]));
    q->pub_count--;
}

int consumeq_pub_add(struct consumeq *q, const struct consumeq_run *run,
                     const struct consumeq_run *obsolete,
                     uint32_t obsolete_count)
{
    ASSERT(q->pub_count < CONSUMEQ_PUB_MAX && obsolete_count <= CONSUMEQ_RUN_MAX);
    if (q->pub_failed)
        return 0; /* Nothing more reaches the disk's index; the run serves from memory. */
    int fd = dup(run->fd);
    if (fd == -1)
        return -errno;
    /* A merge takes the place of the first of its inputs still queued, which it replaces
     * (they are never published): runs reach the disk in sequence order, never with a gap. */
    uint32_t at = q->pub_count;
    for (uint32_t i = 0; i < obsolete_count; i++) {
        for (uint32_t j = 0; j < q->pub_count; j++) {
            struct consumeq_pub *o = &q->pubs[j];
            if (o->in_flight || o->first_seq != obsolete[i].meta.first_seq ||
                o->last_seq != obsolete[i].meta.last_seq)
                continue;
            at = MIN(at, j);
            pub_remove(q, j);
            break;
        }
    }
    at = MIN(at, q->pub_count);
    memmove(&q->pubs[at + 1], &q->pubs[at], (q->pub_count - at) * sizeof(q->pubs[0]));
    q->pub_count++;
    struct consumeq_pub *p = &q->pubs[at];
    *p = (struct consumeq_pub){ .fd = fd, .first_seq = run->meta.first_seq,
                                .last_seq = run->meta.last_seq,
                                .obsolete_count = obsolete_count };
    for (uint32_t i = 0; i < obsolete_count; i++)
        p->obsolete[i] = (struct consumeq_pub_name){ obsolete[i].meta.first_seq,
                                                     obsolete[i].meta.last_seq };
    if (q->ring != NULL) {
        consumeq_pump(q);
        return 0;
    }
    int rc = 0;
    while (q->pub_count > 0 && rc == 0)
        rc = pub_sync(q);
    return rc;
}

void consumeq_attach_ring(struct consumeq *q, struct io_uring *ring, uint64_t user_data)
{
    ASSERT(!consumeq_busy(q) && (user_data & CONSUMEQ_IO_UNLINK) == 0);
    int fd = ring != NULL ? open(q->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (ring != NULL && fd == -1) {
        consumeq_report(q, "consumeq: cannot open %s for directory fsyncs (%s); runs are "
                        "published with blocking calls", q->dir, strerror(errno));
        ring = NULL;
    }
    if (q->dir_fd >= 0)
        (void)close(q->dir_fd);
    q->dir_fd = fd;
    q->ring = ring;
    q->ring_user_data = user_data;
}

/* Submits the head's publication if none is in flight. */
static void consumeq_pump(struct consumeq *q)
{
    if (q->ring == NULL || q->pub_count == 0 || q->pubs[0].in_flight)
        return;
    struct consumeq_pub *p = &q->pubs[0];
    /* Linked: each starts when the one before succeeded, else completes with -ECANCELED. A
     * chain must not be split by a submit, so it waits until the queue has room for all. */
    if (io_uring_sq_space_left(q->ring) < PUB_OPS)
        (void)io_uring_submit(q->ring); /* errors surface on the loop's own submit */
    if (io_uring_sq_space_left(q->ring) < PUB_OPS)
        return; /* the next pump tries again */
    struct io_uring_sqe *sqe[PUB_OPS];
    for (uint32_t i = 0; i < PUB_OPS; i++)
        sqe[i] = io_uring_get_sqe(q->ring);
    pub_paths(q, p->first_seq, p->last_seq, q->pub_final, q->pub_tmp); /* read at submit */
    io_uring_prep_fsync(sqe[0], p->fd, 0);
    io_uring_prep_renameat(sqe[1], AT_FDCWD, q->pub_tmp, AT_FDCWD, q->pub_final, 0);
    io_uring_prep_fsync(sqe[2], q->dir_fd, 0);
    for (uint32_t i = 0; i < PUB_OPS; i++) {
        io_uring_sqe_set_data64(sqe[i], q->ring_user_data);
        if (i + 1 < PUB_OPS)
            sqe[i]->flags |= IOSQE_IO_LINK;
    }
    p->in_flight = true;
    p->done = 0;
    p->err = 0;
}

void consumeq_on_io(struct consumeq *q, uint64_t user_data, int res)
{
    if (user_data & CONSUMEQ_IO_UNLINK) {
        ASSERT(q->unlinks_in_flight > 0);
        q->unlinks_in_flight--;
        unlink_result(q, res);
        return;
    }
    ASSERT(q->pub_count > 0 && q->pubs[0].in_flight);
    struct consumeq_pub *p = &q->pubs[0];
    if (res < 0 && p->err == 0)
        p->err = res; /* the first failure; the ones after it are -ECANCELED */
    if (++p->done < PUB_OPS)
        return;
    p->in_flight = false;
    if (p->err != 0)
        pub_fail(q, p->err);
    else
        pub_done(q);
    consumeq_pump(q);
}

bool consumeq_busy(const struct consumeq *q)
{
    return (q->pub_count > 0 && q->pubs[0].in_flight) || q->unlinks_in_flight > 0;
}

void consumeq_pub_finish(struct consumeq *q)
{
    ASSERT(!consumeq_busy(q));
    while (q->pub_count > 0 && pub_sync(q) == 0)
        ;
}
