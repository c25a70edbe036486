/* io/uring_compat.h - what liburing 2.3 lacks but the kernel (6.x) has, as raw SQE fields.
 *
 * Header-only; any thread that owns the ring it prepares for. Each helper names the kernel
 * interface it fills in, so it can be replaced by the liburing helper of the same name once
 * Debian ships a newer liburing.
 */
#ifndef KEELMQ_IO_URING_COMPAT_H
#define KEELMQ_IO_URING_COMPAT_H

#include <liburing.h>

/* IORING_OP_MSG_RING with IORING_MSG_SEND_FD: installs the direct descriptor `source_slot` of
 * the submitting ring into the ring `target_ring_fd`. With `target_slot` ==
 * IORING_FILE_INDEX_ALLOC the target ring picks a free slot, which its CQE reports in `res`;
 * the target CQE carries `target_user_data`. (liburing >= 2.4: io_uring_prep_msg_ring_fd.) */
static inline void uring_prep_msg_ring_fd(struct io_uring_sqe *sqe, int target_ring_fd,
                                          int source_slot, unsigned target_slot,
                                          __u64 target_user_data)
{
    io_uring_prep_rw(IORING_OP_MSG_RING, sqe, target_ring_fd, (void *)(uintptr_t)IORING_MSG_SEND_FD,
                     0, target_user_data);
    sqe->addr3 = (__u64)source_slot;
    /* file_index is target slot + 1, or IORING_FILE_INDEX_ALLOC (the kernel's own encoding). */
    sqe->file_index = target_slot == IORING_FILE_INDEX_ALLOC ? IORING_FILE_INDEX_ALLOC
                                                             : target_slot + 1;
}

/* IORING_OP_ASYNC_CANCEL of every request on the direct descriptor `slot`. */
static inline void uring_prep_cancel_fixed_all(struct io_uring_sqe *sqe, int slot)
{
    io_uring_prep_cancel_fd(sqe, slot, IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
}

#endif
