/* io/uring.c - io_uring probe, ring and buffer-ring setup, SQE acquisition, listeners.
 *
 * uring_probe and uring_listen_tcp run on the main thread before shards start; everything
 * else runs on the shard thread that owns the ring.
 */
#include "io/uring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static const struct {
    uint8_t op;
    const char *name;
} required_ops[] = {
    { IORING_OP_ACCEPT, "accept" },         { IORING_OP_RECV, "recv" },
    { IORING_OP_SEND, "send" },             { IORING_OP_CLOSE, "close" },
    { IORING_OP_ASYNC_CANCEL, "async_cancel" }, { IORING_OP_MSG_RING, "msg_ring" },
};

int uring_probe(char *err, size_t err_len)
{
    struct io_uring ring;
    struct io_uring_params params = { 0 };
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(8, &ring, &params);
    if (rc == -ENOSYS || rc == -EPERM) {
        snprintf(err, err_len,
                 "io_uring is not available (%s): keelmq needs Linux >= 6.1 with io_uring "
                 "enabled (check sysctl kernel.io_uring_disabled and seccomp/container policy)",
                 strerror(-rc));
        return rc;
    }
    if (rc == -EINVAL) {
        snprintf(err, err_len,
                 "io_uring lacks IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN: keelmq needs "
                 "Linux >= 6.1");
        return rc;
    }
    if (rc < 0) {
        snprintf(err, err_len, "io_uring setup failed: %s", strerror(-rc));
        return rc;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    if (probe == NULL) {
        io_uring_queue_exit(&ring);
        snprintf(err, err_len, "io_uring probe failed: keelmq needs Linux >= 6.1");
        return -ENOTSUP;
    }
    rc = 0;
    for (size_t i = 0; i < ARRAY_LEN(required_ops); i++) {
        if (!io_uring_opcode_supported(probe, required_ops[i].op)) {
            snprintf(err, err_len, "io_uring lacks the %s opcode: keelmq needs Linux >= 6.1",
                     required_ops[i].name);
            rc = -ENOTSUP;
            break;
        }
    }
    io_uring_free_probe(probe);
    if (rc == 0 && !(params.features & IORING_FEAT_EXT_ARG)) {
        snprintf(err, err_len, "io_uring lacks IORING_FEAT_EXT_ARG: keelmq needs Linux >= 6.1");
        rc = -ENOTSUP;
    }
    io_uring_queue_exit(&ring);
    return rc;
}

int uring_init(struct io_uring *ring, uint32_t entries, uint32_t files_max)
{
    ASSERT(entries >= 64 && files_max > 0);
    struct io_uring_params params = { 0 };
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                   IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
    /* A multishot recv per connection can post many CQEs per loop: keep the CQ large so it
     * does not overflow into the kernel's slower backlog. */
    params.cq_entries = entries * 8;
    int rc = io_uring_queue_init_params(entries, ring, &params);
    if (rc < 0)
        return rc;
    rc = io_uring_register_files_sparse(ring, files_max);
    if (rc < 0) {
        io_uring_queue_exit(ring);
        return rc;
    }
    return 0;
}

int uring_bufring_init(struct io_uring *ring, struct uring_bufring *b, uint16_t group_id,
                       uint32_t count, uint32_t size)
{
    ASSERT(count > 0 && (count & (count - 1)) == 0 && count <= 32768);
    ASSERT(size > 0);
    memset(b, 0, sizeof(*b));
    size_t ring_len = (size_t)count * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br == MAP_FAILED)
        return -errno;
    b->mem = malloc((size_t)count * size);
    if (b->mem == NULL) {
        munmap(br, ring_len);
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg = { 0 };
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = count;
    reg.bgid = group_id;
    int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc < 0) {
        free(b->mem);
        munmap(br, ring_len);
        return rc;
    }
    b->br = br;
    b->count = count;
    b->size = size;
    b->group_id = group_id;
    io_uring_buf_ring_init(b->br);
    for (uint32_t i = 0; i < count; i++)
        uring_bufring_recycle(b, (uint16_t)i);
    uring_bufring_publish(b);
    return 0;
}

void uring_bufring_destroy(struct io_uring *ring, struct uring_bufring *b)
{
    if (b->br == NULL)
        return;
    (void)io_uring_unregister_buf_ring(ring, b->group_id); /* The ring is going away anyway. */
    munmap(b->br, (size_t)b->count * sizeof(struct io_uring_buf));
    free(b->mem);
    memset(b, 0, sizeof(*b));
}

struct io_uring_sqe *uring_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (LIKELY(sqe != NULL))
        return sqe;
    int rc = io_uring_submit(ring);
    ASSERT(rc >= 0);
    sqe = io_uring_get_sqe(ring);
    ASSERT(sqe != NULL);
    return sqe;
}

static int listen_fail(int fd, const char *what, char *err, size_t err_len)
{
    int saved = errno;
    snprintf(err, err_len, "%s: %s", what, strerror(saved));
    if (fd >= 0)
        close(fd);
    return -saved;
}

int uring_listen_tcp(const char *bind_addr, uint16_t port, uint32_t backlog,
                     uint16_t *bound_port, char *err, size_t err_len)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t ss_len;
    int family;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, bind_addr, &in4->sin_addr) == 1) {
        family = AF_INET;
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        ss_len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, bind_addr, &in6->sin6_addr) == 1) {
        family = AF_INET6;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        ss_len = sizeof(*in6);
    } else {
        snprintf(err, err_len, "listener.tcp.bind: '%s' is not an IPv4 or IPv6 address",
                 bind_addr);
        return -EINVAL;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return listen_fail(-1, "socket", err, err_len);
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        return listen_fail(fd, "setsockopt SO_REUSEPORT", err, err_len);
    if (bind(fd, (struct sockaddr *)&ss, ss_len) == -1) {
        char what[320];
        snprintf(what, sizeof(what), "bind %s:%u", bind_addr, port);
        return listen_fail(fd, what, err, err_len);
    }
    if (listen(fd, (int)backlog) == -1)
        return listen_fail(fd, "listen", err, err_len);
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        return listen_fail(fd, "getsockname", err, err_len);
    *bound_port = ntohs(family == AF_INET ? in4->sin_port : in6->sin6_port);
    return fd;
}
