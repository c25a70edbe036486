/* io/wake.c - the sleep/wake handshake between a shard and its producers.
 *
 * The race to avoid: a producer publishes to a ring just after the shard checked that ring,
 * and the shard then sleeps although work is pending. Both sides use sequentially consistent
 * operations on `sleeping` and on the ring indexes' visibility: the shard stores sleeping=1
 * and then loads the ring tails; a producer stores the ring tail and then exchanges sleeping
 * to 0. With seq_cst ordering at least one side sees the other's store: either the shard sees
 * the new entry and does not sleep, or the producer sees sleeping=1 and sends a wake-up.
 */
#include "io/wake.h"

#include <stdatomic.h>
#include <time.h>

#include "io/uring.h"

void wake_init(struct wake *w)
{
    atomic_init(&w->sleeping, 0);
    atomic_init(&w->stop, 0);
    w->ring_fd = -1;
}

void wake_prepare_sleep(struct wake *w)
{
    /* seq_cst: pairs with the exchange in wake_peer (see the file comment). */
    atomic_store_explicit(&w->sleeping, 1, memory_order_seq_cst);
    /* Keeps the ring-tail loads of the re-check after the store above. */
    atomic_thread_fence(memory_order_seq_cst);
}

void wake_cancel_sleep(struct wake *w)
{
    atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
}

bool wake_peer(struct io_uring *ring, struct wake *target)
{
    /* seq_cst fence: orders the caller's earlier release store of the ring tail before the
     * load of `sleeping`; pairs with wake_prepare_sleep's seq_cst store. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&target->sleeping, memory_order_relaxed) == 0)
        return false;
    if (atomic_exchange_explicit(&target->sleeping, 0, memory_order_seq_cst) == 0)
        return false; /* Someone else woke it first. */
    ASSERT(target->ring_fd >= 0);
    struct io_uring_sqe *sqe = uring_sqe(ring);
    io_uring_prep_msg_ring(sqe, target->ring_fd, 0, uring_ud(URING_OP_WAKE, 0, 0), 0);
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_WAKE_SENT, 0, 0));
    return true;
}

void wake_request_stop(struct wake *w)
{
    /* seq_cst: the shard's sleep re-check loads `stop` after announcing sleep. */
    atomic_store_explicit(&w->stop, 1, memory_order_seq_cst);
}

bool wake_stop_requested(struct wake *w)
{
    return atomic_load_explicit(&w->stop, memory_order_seq_cst) != 0;
}

void wake_group_init(struct wake_group *g)
{
    atomic_init(&g->quiesced, 0);
    atomic_init(&g->ready, 0);
    atomic_init(&g->go, 0);
}

void wake_group_ready(struct wake_group *g)
{
    /* release: the shard's ring fd and setup result are written before; pairs with the
     * acquire in wake_group_wait_ready. */
    atomic_fetch_add_explicit(&g->ready, 1, memory_order_release);
}

/* Startup only, a few milliseconds: a short sleep between checks is fine here. */
static void nap(void)
{
    struct timespec ts = { 0, 200000 };
    nanosleep(&ts, NULL);
}

void wake_group_wait_ready(struct wake_group *g, uint32_t count)
{
    /* acquire: pairs with the release in wake_group_ready. */
    while (atomic_load_explicit(&g->ready, memory_order_acquire) < count)
        nap();
}

void wake_group_set_go(struct wake_group *g, uint32_t verdict)
{
    /* release: pairs with the acquire in wake_group_wait_go. */
    atomic_store_explicit(&g->go, verdict, memory_order_release);
}

uint32_t wake_group_wait_go(struct wake_group *g)
{
    uint32_t v;
    /* acquire: pairs with the release in wake_group_set_go; every peer's ring fd is then
     * visible. */
    while ((v = atomic_load_explicit(&g->go, memory_order_acquire)) == 0)
        nap();
    return v;
}

void wake_group_quiesce(struct wake_group *g)
{
    /* release: the shard's last ring publishes happen before it counts itself in; pairs with
     * the acquire load in wake_group_all_quiesced. */
    atomic_fetch_add_explicit(&g->quiesced, 1, memory_order_release);
}

bool wake_group_all_quiesced(struct wake_group *g, uint32_t count)
{
    /* acquire: pairs with the release in wake_group_quiesce. */
    return atomic_load_explicit(&g->quiesced, memory_order_acquire) >= count;
}
