/* io/wake.h - sleeping and waking a shard.
 *
 * A shard announces that it is about to sleep (wake_prepare_sleep), re-checks its inbound
 * rings and stop flag, and then waits in io_uring_enter. A producer that has just published to
 * that shard's ring calls wake_peer: only if the shard announced sleep does it send a
 * MSG_RING wake-up, so a busy shard costs producers one load (PLATFORM: a wake is 40-60 us,
 * a load 0.13 us). The flag lives on its own cache line (STYLE 8). Atomics live here and in
 * core/spsc.c only.
 */
#ifndef KEELMQ_IO_WAKE_H
#define KEELMQ_IO_WAKE_H

#include <liburing.h>

#include "core/base.h"

struct wake {
    _Alignas(CACHE_LINE) _Atomic uint32_t sleeping; /* written by owner and waker */
    _Atomic uint32_t stop;                          /* written by the main thread */
    int ring_fd;                                    /* read-only after the shard started */
};

void wake_init(struct wake *w);

/* Owner: announces the sleep. After this, re-check every inbound ring and wake_stop_requested;
 * if something is pending, call wake_cancel_sleep and carry on instead of sleeping. */
void wake_prepare_sleep(struct wake *w);
void wake_cancel_sleep(struct wake *w);

/* Waker (another shard, with its own ring, or the main thread's ring): wakes `target` if it
 * announced sleep. Must be called after the data the target should see was published. Returns
 * true if a wake-up SQE was queued on `ring` (the caller submits it). */
bool wake_peer(struct io_uring *ring, struct wake *target);

/* Shutdown barrier: every shard counts itself in once it has no connections left (it will
 * produce no more notes); a shard exits only when all have, and its rings are drained. */
struct wake_group {
    _Alignas(CACHE_LINE) _Atomic uint32_t quiesced;
    _Atomic uint32_t ready; /* startup: shards whose ring setup finished (well or not) */
    _Atomic uint32_t go;    /* startup: 0 = wait, 1 = run, 2 = abort */
};
void wake_group_init(struct wake_group *g);
/* Startup barrier: each shard reports ready and waits for the main thread's verdict; the main
 * thread waits for all to be ready (their ring fds are then known) and says go or abort. */
void wake_group_ready(struct wake_group *g);
void wake_group_wait_ready(struct wake_group *g, uint32_t count);
void wake_group_set_go(struct wake_group *g, uint32_t verdict);
uint32_t wake_group_wait_go(struct wake_group *g);
void wake_group_quiesce(struct wake_group *g);
bool wake_group_all_quiesced(struct wake_group *g, uint32_t count);

/* Main thread: asks the shard to stop. Then wake_peer it. */
void wake_request_stop(struct wake *w);
bool wake_stop_requested(struct wake *w);

#endif
