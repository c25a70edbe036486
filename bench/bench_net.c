/* bench/bench_net.c - keelmq-bench's connections on io_uring (see bench/bench_net.h).
 * Single-threaded: the thread that called bench_net_init.
 */
#include "bench/bench_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/codec.h"

/* Completion kinds of the bench beyond io/uring.h's (connects are the bench's own). */
#define BENCH_OP_CONNECT ((enum uring_op)0x20)

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static struct io_uring *ring_of(struct bench_net *n, const struct bench_conn *c)
{
    return &n->rings[c->ring_idx].ring;
}

/* How many connections each ring takes: all of them when one ring's fixed-file table can
 * hold them, else BENCH_NET_CONNS_PER_RING. Returns 0 when even that is impossible. */
static uint32_t plan_rings(uint32_t conn_count, uint64_t fd_limit, char *err, size_t err_len)
{
    if ((uint64_t)conn_count + BENCH_NET_FD_SPARE <= fd_limit)
        return conn_count;
    uint64_t rings = ((uint64_t)conn_count + BENCH_NET_CONNS_PER_RING - 1) /
                     BENCH_NET_CONNS_PER_RING;
    if (BENCH_NET_CONNS_PER_RING + BENCH_NET_FD_SPARE > fd_limit ||
        rings > BENCH_NET_RINGS_MAX) {
        snprintf(err, err_len,
                 "%u connections need %llu io_urings of %u direct descriptors (each ring's "
                 "fixed-file table is capped at RLIMIT_NOFILE = %llu): at most %u rings",
                 conn_count, (unsigned long long)rings, BENCH_NET_CONNS_PER_RING,
                 (unsigned long long)fd_limit, BENCH_NET_RINGS_MAX);
        return 0;
    }
    return BENCH_NET_CONNS_PER_RING;
}

/* Sets up every ring with its share of slots and of receive buffers. */
static int rings_init(struct bench_net *n, char *err, size_t err_len)
{
    uint32_t rx_count = BENCH_NET_RX_BUFFER_COUNT;
    while (rx_count > 256 && rx_count * n->ring_count > BENCH_NET_RX_BUFFER_COUNT * 4)
        rx_count /= 2; /* many rings of mostly idle connections: bound the memory */
    for (uint32_t i = 0; i < n->ring_count; i++) {
        struct bench_ring *r = &n->rings[i];
        uint32_t slots = MIN(n->conns_per_ring, n->conn_count - i * n->conns_per_ring);
        int rc = uring_init(&r->ring, BENCH_NET_RING_ENTRIES, slots);
        if (rc < 0) {
            snprintf(err, err_len, "io_uring setup (ring %u): %s", i, strerror(-rc));
            return rc;
        }
        rc = uring_bufring_init(&r->ring, &r->rx, 0, rx_count, BENCH_NET_RX_BUFFER_SIZE);
        if (rc < 0) {
            io_uring_queue_exit(&r->ring);
            snprintf(err, err_len, "io_uring buffer ring (ring %u): %s", i, strerror(-rc));
            return rc;
        }
        r->is_ready = true;
    }
    return 0;
}

int bench_net_init(struct bench_net *n, const struct bench_net_config *cfg, char *err,
                   size_t err_len)
{
    ASSERT(cfg->conn_count > 0 && cfg->on_frame != NULL && cfg->on_event != NULL);
    memset(n, 0, sizeof(*n));
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == -1) {
        int saved = errno;
        snprintf(err, err_len, "getrlimit: %s", strerror(saved));
        return -saved;
    }
    n->conns_per_ring = plan_rings(cfg->conn_count, lim.rlim_cur, err, err_len);
    if (n->conns_per_ring == 0)
        return -EMFILE;
    n->ring_count = (cfg->conn_count + n->conns_per_ring - 1) / n->conns_per_ring;
    n->broker_addr.sin_family = AF_INET;
    n->broker_addr.sin_port = htons(cfg->port);
    if (inet_pton(AF_INET, cfg->host, &n->broker_addr.sin_addr) != 1) {
        snprintf(err, err_len, "--host '%s' is not an IPv4 address", cfg->host);
        return -EINVAL;
    }
    /* Source addresses only make sense towards loopback, where all of 127/8 is local. */
    n->bind_sources = strncmp(cfg->host, "127.", 4) == 0;
    n->source_count = cfg->source_count;
    n->conns = calloc(cfg->conn_count, sizeof(*n->conns));
    n->rings = calloc(n->ring_count, sizeof(*n->rings));
    if (n->conns == NULL || n->rings == NULL) {
        snprintf(err, err_len, "out of memory for %u connections", cfg->conn_count);
        return -ENOMEM; /* bench_net_destroy frees what was allocated */
    }
    for (uint32_t i = 0; i < cfg->conn_count; i++) {
        n->conns[i].idx = i;
        n->conns[i].ring_idx = (uint16_t)(i / n->conns_per_ring);
        n->conns[i].slot = i % n->conns_per_ring;
    }
    n->conn_count = cfg->conn_count;
    int rc = rings_init(n, err, err_len);
    if (rc < 0)
        return rc;
    n->on_frame = cfg->on_frame;
    n->on_event = cfg->on_event;
    n->ctx = cfg->ctx;
    n->now_ns = base_now_ns();
    return 0;
}

void bench_net_destroy(struct bench_net *n)
{
    for (uint32_t i = 0; n->rings != NULL && i < n->ring_count; i++) {
        struct bench_ring *r = &n->rings[i];
        if (!r->is_ready)
            continue;
        uring_bufring_destroy(&r->ring, &r->rx);
        io_uring_queue_exit(&r->ring); /* Closes every direct descriptor still installed. */
    }
    for (uint32_t i = 0; n->conns != NULL && i < n->conn_count; i++) {
        free(n->conns[i].in.data);
        free(n->conns[i].out.data);
        free(n->conns[i].sending.data);
    }
    free(n->rings);
    free(n->conns);
    n->rings = NULL;
    n->conns = NULL;
}

/* socket + options + bind, returning the fd or -errno. */
static int make_socket(const struct bench_net *n, uint32_t idx)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int one = 1;
    int rc = 0;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
        rc = -errno;
    if (rc == 0 && n->bind_sources) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        src.sin_addr.s_addr = htonl(0x7F000001u + idx % n->source_count);
        if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) == -1 ||
            bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1)
            rc = -errno;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int bench_net_open(struct bench_net *n, struct bench_conn *c)
{
    ASSERT(!c->is_open && c->idx < n->conn_count);
    int fd = make_socket(n, c->idx);
    if (fd < 0)
        return fd;
    int rc = io_uring_register_files_update(ring_of(n, c), c->slot, &fd, 1);
    close(fd); /* The fixed-file table holds its own reference (or the update failed). */
    if (rc != 1)
        return rc < 0 ? rc : -EIO;
    c->is_open = true;
    struct io_uring_sqe *sqe = uring_sqe(ring_of(n, c));
    io_uring_prep_connect(sqe, (int)c->slot, (const struct sockaddr *)&n->broker_addr,
                          sizeof(n->broker_addr));
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, uring_ud(BENCH_OP_CONNECT, 0, c->idx));
    return 0;
}

static void arm_recv(struct bench_net *n, struct bench_conn *c)
{
    ASSERT(!c->recv_armed && c->is_open);
    struct io_uring_sqe *sqe = uring_sqe(ring_of(n, c));
    io_uring_prep_recv_multishot(sqe, (int)c->slot, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = n->rings[c->ring_idx].rx.group_id;
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_RECV, 0, c->idx));
    c->recv_armed = true;
}

uint8_t *bench_net_out_reserve(struct bench_net *n, struct bench_conn *c, uint32_t len)
{
    if (!c->is_open || c->is_lost)
        return NULL;
    if ((uint64_t)bench_net_out_pending(c) + len > BENCH_NET_OUT_MAX)
        return NULL;
    if (!bytebuf_reserve(&c->out, c->out.len + len))
        return NULL;
    uint8_t *p = c->out.data + c->out.len;
    c->out.len += len;
    if (!c->is_dirty) {
        c->is_dirty = true;
        c->dirty_next = n->dirty;
        n->dirty = c;
    }
    return p;
}

static void submit_send(struct bench_net *n, struct bench_conn *c)
{
    ASSERT(!c->send_inflight && c->send_off < c->sending.len);
    struct io_uring_sqe *sqe = uring_sqe(ring_of(n, c));
    io_uring_prep_send(sqe, (int)c->slot, c->sending.data + c->send_off,
                       c->sending.len - c->send_off, MSG_NOSIGNAL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_SEND, 0, c->idx));
    c->send_inflight = true;
    c->last_tx_ns = n->now_ns;
}

void bench_net_flush(struct bench_net *n)
{
    struct bench_conn *c = n->dirty;
    n->dirty = NULL;
    while (c != NULL) {
        struct bench_conn *next = c->dirty_next;
        c->is_dirty = false;
        c->dirty_next = NULL;
        if (!c->send_inflight && c->out.len > 0 && !c->is_lost) {
            struct bytebuf swap = c->sending;
            c->sending = c->out;
            c->out = swap;
            c->out.len = 0;
            c->send_off = 0;
            submit_send(n, c);
        }
        c = next;
    }
}

static void lose(struct bench_net *n, struct bench_conn *c, int res)
{
    if (c->is_lost)
        return;
    c->is_lost = true;
    n->on_event(n->ctx, c, BENCH_NET_LOST, res);
}

void bench_net_feed(struct bench_net *n, struct bench_conn *c, const uint8_t *data,
                    uint32_t len)
{
    uint32_t off = 0;
    while (off < len && !c->is_lost) {
        if (c->in.len > 0 || c->in_frame_len > 0) {
            /* Complete the partial frame: header byte by byte (<= 5), then the body. */
            uint32_t take = 1;
            if (c->in_frame_len > 0)
                take = MIN(c->in_frame_len - c->in.len, len - off);
            if (!bytebuf_append(&c->in, data + off, take)) {
                lose(n, c, -ENOMEM);
                return;
            }
            off += take;
            if (c->in_frame_len == 0) {
                uint32_t frame_len = 0;
                int rc = codec_frame(c->in.data, c->in.len, &frame_len);
                if (rc < 0 || (rc > 0 && frame_len > BENCH_NET_FRAME_MAX)) {
                    lose(n, c, -EBADMSG);
                    return;
                }
                if (rc > 0)
                    c->in_frame_len = frame_len;
            }
            if (c->in_frame_len == 0 || c->in.len < c->in_frame_len)
                continue;
            uint32_t frame_len = c->in_frame_len;
            c->in_frame_len = 0;
            c->in.len = 0;
            if (!n->on_frame(n->ctx, c, c->in.data, frame_len))
                return;
            continue;
        }
        uint32_t frame_len = 0;
        int rc = codec_frame(data + off, len - off, &frame_len);
        if (rc < 0 || (rc > 0 && frame_len > BENCH_NET_FRAME_MAX)) {
            lose(n, c, -EBADMSG);
            return;
        }
        if (rc == 0 || frame_len > len - off) {
            if (!bytebuf_reserve(&c->in, rc > 0 ? frame_len : 8u) ||
                !bytebuf_append(&c->in, data + off, len - off)) {
                lose(n, c, -ENOMEM);
                return;
            }
            c->in_frame_len = rc > 0 ? frame_len : 0;
            return;
        }
        if (!n->on_frame(n->ctx, c, data + off, frame_len))
            return;
        off += frame_len;
    }
}

static void on_recv(struct bench_net *n, struct bench_conn *c, const struct io_uring_cqe *cqe)
{
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        struct uring_bufring *rx = &n->rings[c->ring_idx].rx;
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (cqe->res > 0 && !c->is_lost)
            bench_net_feed(n, c, uring_bufring_addr(rx, bid), (uint32_t)cqe->res);
        uring_bufring_recycle(rx, bid);
    }
    if (cqe->flags & IORING_CQE_F_MORE)
        return;
    c->recv_armed = false;
    if (c->is_lost || !c->is_open)
        return;
    if (cqe->res > 0 || cqe->res == -ENOBUFS)
        arm_recv(n, c); /* Multishot ended (buffers ran out): re-arm. */
    else
        lose(n, c, cqe->res);
}

static void on_send(struct bench_net *n, struct bench_conn *c, int res)
{
    c->send_inflight = false;
    if (res <= 0) {
        lose(n, c, res == 0 ? -EPIPE : res);
        return;
    }
    c->send_off += (uint32_t)res;
    if (c->send_off < c->sending.len) {
        submit_send(n, c); /* Short send: the rest first, keeping the byte order. */
        return;
    }
    c->sending.len = 0;
    c->send_off = 0;
    if (c->out.len > 0 && !c->is_dirty) {
        c->is_dirty = true;
        c->dirty_next = n->dirty;
        n->dirty = c;
    }
}

static void on_cqe(struct bench_net *n, const struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    enum uring_op op = uring_ud_op(ud);
    if (op == URING_OP_CLOSE || op == URING_OP_CANCEL || op == URING_OP_NONE)
        return;
    uint32_t idx = uring_ud_idx(ud);
    ASSERT(idx < n->conn_count);
    struct bench_conn *c = &n->conns[idx];
    if (op == URING_OP_RECV) {
        on_recv(n, c, cqe);
    } else if (op == URING_OP_SEND) {
        on_send(n, c, cqe->res);
    } else if (op == BENCH_OP_CONNECT) {
        if (cqe->res < 0) {
            c->is_lost = true;
            n->on_event(n->ctx, c, BENCH_NET_CONNECT_FAILED, cqe->res);
            return;
        }
        arm_recv(n, c);
        n->on_event(n->ctx, c, BENCH_NET_CONNECTED, 0);
    }
}

/* Handles every completion waiting in ring `r`. */
static void reap(struct bench_net *n, struct bench_ring *r)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&r->ring, head, cqe) {
        on_cqe(n, cqe);
        seen++;
    }
    io_uring_cq_advance(&r->ring, seen);
    uring_bufring_publish(&r->rx);
}

void bench_net_wait(struct bench_net *n, uint64_t timeout_ns)
{
    if (n->ring_count > 1) {
        /* Rings past the first are only polled: submit their work and run their completions
         * (DEFER_TASKRUN posts them only when the owner enters the ring). */
        for (uint32_t i = 1; i < n->ring_count; i++) {
            int rc = io_uring_submit_and_get_events(&n->rings[i].ring);
            ASSERT(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
        }
        timeout_ns = MIN(timeout_ns, BENCH_NET_MULTI_RING_POLL_NS);
    }
    struct __kernel_timespec ts = {
        .tv_sec = (long long)(timeout_ns / 1000000000u),
        .tv_nsec = (long long)(timeout_ns % 1000000000u),
    };
    struct io_uring_cqe *cqe = NULL;
    int rc = io_uring_submit_and_wait_timeout(&n->rings[0].ring, &cqe, 1, &ts, NULL);
    ASSERT(rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
    n->now_ns = base_now_ns();
    for (uint32_t i = 0; i < n->ring_count; i++) {
        if (i > 0) {
            rc = io_uring_get_events(&n->rings[i].ring);
            ASSERT(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
        }
        reap(n, &n->rings[i]);
    }
}

void bench_net_close(struct bench_net *n, struct bench_conn *c)
{
    if (!c->is_open)
        return;
    c->is_lost = true;
    c->is_open = false;
    struct io_uring_sqe *sqe = uring_sqe(ring_of(n, c));
    uring_prep_cancel_fixed_all(sqe, (int)c->slot);
    sqe->flags |= IOSQE_IO_HARDLINK; /* The close runs even when nothing was cancelled. */
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CANCEL, 0, c->idx));
    sqe = uring_sqe(ring_of(n, c));
    io_uring_prep_close_direct(sqe, c->slot);
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CLOSE, 0, c->idx));
}
