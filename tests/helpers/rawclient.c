/* tests/helpers/rawclient.c - raw-packet MQTT test client.
 *
 * Blocking socket for sends (tests send little, and a broker that stops reading makes the
 * send fail with a reset rather than hang: SO_SNDTIMEO bounds it), poll() deadlines for
 * receives. Test code only, one thread per client.
 */
#include "tests/helpers/rawclient.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define SEND_TIMEOUT_S 10

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int rawclient_open(struct rawclient *client, uint16_t port, uint8_t version)
{
    ASSERT(port != 0);
    client->fd = -1;
    client->version = version;
    client->has_peer_closed = false;
    client->decode_rc = MQTT_RC_SUCCESS;
    client->in_len = 0;
    client->frame_len = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int one = 1;
    struct timeval send_timeout = { .tv_sec = SEND_TIMEOUT_S };
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* latency only */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
    struct sockaddr_in addr = {
        .sin_family = AF_INET,
        .sin_port = htons(port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == -1) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    client->fd = fd;
    return 0;
}

void rawclient_close(struct rawclient *client)
{
    if (client->fd != -1)
        close(client->fd);
    client->fd = -1;
}

int rawclient_send(struct rawclient *client, const void *bytes, uint32_t len)
{
    ASSERT(client->fd != -1);
    const uint8_t *cursor = bytes;
    while (len > 0) {
        ssize_t n = send(client->fd, cursor, len, MSG_NOSIGNAL);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        cursor += n;
        len -= (uint32_t)n;
    }
    return 0;
}

int rawclient_send_packet(struct rawclient *client, const struct rawpacket *packet)
{
    return rawclient_send(client, packet->bytes, packet->len);
}

/* Reads what is available into client->in. Returns 1 on bytes, 0 on close, -errno. */
static int fill(struct rawclient *client)
{
    if (client->in_len == RAWCLIENT_IN_CAP)
        return -ENOBUFS;
    for (;;) {
        ssize_t n = recv(client->fd, client->in + client->in_len,
                         RAWCLIENT_IN_CAP - client->in_len, MSG_DONTWAIT);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == ECONNRESET || errno == EPIPE)) {
            client->has_peer_closed = true;
            return 0;
        }
        if (n == -1)
            return errno == EAGAIN ? 1 : -errno;
        if (n == 0) {
            client->has_peer_closed = true;
            return 0;
        }
        client->in_len += (uint32_t)n;
        return 1;
    }
}

/* Waits for readability until `deadline_ms`, polling at least once (so a deadline already
 * passed still sees what has arrived). Returns 1 ready, 0 timeout, -errno. */
static int wait_readable(struct rawclient *client, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = now_ms();
        int wait_ms = now >= deadline_ms ? 0 : (int)(deadline_ms - now);
        struct pollfd pfd = { .fd = client->fd, .events = POLLIN };
        int ready = poll(&pfd, 1, wait_ms);
        if (ready == -1 && errno == EINTR)
            continue;
        if (ready == -1)
            return -errno;
        return ready > 0 ? 1 : 0;
    }
}

/* Takes one complete frame out of client->in if there is one. Returns 1 taken, 0 need more,
 * RAWCLIENT_BAD_FRAME. */
static int take_frame(struct rawclient *client)
{
    uint32_t frame_len = 0;
    int header_len = codec_frame(client->in, client->in_len, &frame_len);
    if (header_len < 0) {
        client->decode_rc = (enum mqtt_rc)-header_len;
        return RAWCLIENT_BAD_FRAME;
    }
    if (header_len == 0 || frame_len > client->in_len) {
        if (header_len > 0 && frame_len > RAWCLIENT_IN_CAP) {
            client->decode_rc = MQTT_RC_PACKET_TOO_LARGE;
            return RAWCLIENT_BAD_FRAME;
        }
        return 0;
    }
    memcpy(client->frame, client->in, frame_len);
    client->frame_len = frame_len;
    memmove(client->in, client->in + frame_len, client->in_len - frame_len);
    client->in_len -= frame_len;
    return 1;
}

int rawclient_recv(struct rawclient *client, uint32_t timeout_ms, struct mqtt_packet *out)
{
    ASSERT(client->fd != -1);
    uint64_t deadline_ms = now_ms() + timeout_ms;
    for (;;) {
        int taken = take_frame(client);
        if (taken < 0)
            return taken;
        if (taken == 1) {
            memset(out, 0, sizeof(*out));
            client->decode_rc = codec_decode(client->frame, client->frame_len, client->version,
                                             out);
            return client->decode_rc == MQTT_RC_SUCCESS ? RAWCLIENT_OK : RAWCLIENT_BAD_FRAME;
        }
        if (client->has_peer_closed)
            return RAWCLIENT_CLOSED;
        int ready = wait_readable(client, deadline_ms);
        if (ready == 0)
            return RAWCLIENT_TIMEOUT;
        if (ready < 0)
            return RAWCLIENT_ERROR;
        if (fill(client) < 0)
            return RAWCLIENT_ERROR;
    }
}

int rawclient_await_close(struct rawclient *client, uint32_t timeout_ms)
{
    ASSERT(client->fd != -1);
    uint64_t deadline_ms = now_ms() + timeout_ms;
    for (;;) {
        if (client->in_len > 0)
            return RAWCLIENT_DATA;
        if (client->has_peer_closed)
            return RAWCLIENT_CLOSED;
        int ready = wait_readable(client, deadline_ms);
        if (ready == 0)
            return RAWCLIENT_TIMEOUT;
        if (ready < 0 || fill(client) < 0)
            return RAWCLIENT_ERROR;
    }
}

const char *rawclient_result_name(int result)
{
    switch (result) {
    case RAWCLIENT_OK: return "ok";
    case RAWCLIENT_TIMEOUT: return "timeout";
    case RAWCLIENT_CLOSED: return "closed by peer";
    case RAWCLIENT_BAD_FRAME: return "bad frame from broker";
    case RAWCLIENT_DATA: return "data instead of close";
    case RAWCLIENT_ERROR: return "local socket error";
    default: return result < 0 ? "errno" : "?";
    }
}

const char *rawclient_type_name(uint8_t type)
{
    static const char *const names[] = {
        "reserved(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
        "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP",
        "DISCONNECT", "AUTH",
    };
    return type < ARRAY_LEN(names) ? names[type] : "?";
}

/* Builders. Each writes the variable header and payload into `body` first, then the fixed
 * header in front of it, so the remaining length is known when it is written. */
struct writer {
    uint32_t len;
    uint8_t bytes[RAWCLIENT_PACKET_CAP];
};

static void put_u8(struct writer *w, uint8_t value)
{
    ASSERT(w->len < sizeof(w->bytes));
    w->bytes[w->len++] = value;
}

static void put_u16(struct writer *w, uint16_t value)
{
    put_u8(w, (uint8_t)(value >> 8));
    put_u8(w, (uint8_t)value);
}

static void put_u32(struct writer *w, uint32_t value)
{
    put_u16(w, (uint16_t)(value >> 16));
    put_u16(w, (uint16_t)value);
}

static void put_bytes(struct writer *w, const void *bytes, uint32_t len)
{
    ASSERT(len <= sizeof(w->bytes) - w->len);
    if (len > 0)
        memcpy(w->bytes + w->len, bytes, len);
    w->len += len;
}

static void put_string(struct writer *w, const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    ASSERT(len <= UINT16_MAX);
    put_u16(w, (uint16_t)len);
    put_bytes(w, s, (uint32_t)len);
}

static void put_varint(struct writer *w, uint32_t value)
{
    ASSERT(value <= MQTT_VARINT_MAX);
    do {
        uint8_t digit = value % 128u;
        value /= 128u;
        put_u8(w, value > 0 ? (uint8_t)(digit | 128u) : digit);
    } while (value > 0);
}

/* Writes `first_byte`, the remaining length and `body` into `out`. */
static void finish(uint8_t first_byte, const struct writer *body, struct rawpacket *out)
{
    struct writer header = { 0 };
    put_u8(&header, first_byte);
    put_varint(&header, body->len);
    ASSERT(header.len + body->len <= sizeof(out->bytes));
    memcpy(out->bytes, header.bytes, header.len);
    memcpy(out->bytes + header.len, body->bytes, body->len);
    out->len = header.len + body->len;
}

void rawclient_build_connect(const struct rawclient_connect_options *options,
                             struct rawpacket *out)
{
    ASSERT(options->version >= MQTT_V31 && options->version <= MQTT_V5);
    static struct writer body;
    body.len = 0;
    put_string(&body, options->version == MQTT_V31 ? "MQIsdp" : "MQTT");
    put_u8(&body, options->version);
    put_u8(&body, options->clean_start ? 0x02 : 0x00); /* connect flags: only clean start */
    put_u16(&body, options->keepalive_s);
    if (options->version == MQTT_V5) {
        if (options->session_expiry != 0) {
            put_varint(&body, 5);
            put_u8(&body, MQTT_PROP_SESSION_EXPIRY);
            put_u32(&body, options->session_expiry);
        } else {
            put_varint(&body, 0);
        }
    }
    put_string(&body, options->client_id);
    finish(MQTT_CONNECT << 4, &body, out);
}

void rawclient_build_publish(uint8_t version, const struct rawclient_publish_options *options,
                             struct rawpacket *out)
{
    ASSERT(options->qos <= 2);
    ASSERT(options->qos == 0 || options->packet_id != 0);
    static struct writer body;
    body.len = 0;
    put_string(&body, options->topic);
    if (options->qos > 0)
        put_u16(&body, options->packet_id);
    if (version == MQTT_V5)
        put_varint(&body, 0); /* no properties */
    put_bytes(&body, options->payload, options->payload_len);
    uint8_t flags = (uint8_t)((options->dup ? 0x08 : 0) | (options->qos << 1) |
                              (options->retain ? 0x01 : 0));
    finish((uint8_t)(MQTT_PUBLISH << 4 | flags), &body, out);
}

void rawclient_build_subscribe(uint8_t version, uint16_t packet_id, const char *filter,
                               uint8_t options, struct rawpacket *out)
{
    ASSERT(packet_id != 0);
    static struct writer body;
    body.len = 0;
    put_u16(&body, packet_id);
    if (version == MQTT_V5)
        put_varint(&body, 0); /* no properties */
    put_string(&body, filter);
    put_u8(&body, options);
    finish(MQTT_SUBSCRIBE << 4 | 0x02, &body, out); /* SUBSCRIBE flags are 0010 */
}

void rawclient_build_ack(uint8_t type, uint16_t packet_id, struct rawpacket *out)
{
    ASSERT(type >= MQTT_PUBACK && type <= MQTT_PUBCOMP);
    out->bytes[0] = (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 0x02 : 0x00));
    out->bytes[1] = 2; /* remaining length: packet id only (v5: reason 0, no properties) */
    out->bytes[2] = (uint8_t)(packet_id >> 8);
    out->bytes[3] = (uint8_t)packet_id;
    out->len = 4;
}

int rawclient_connect(struct rawclient *client, uint16_t port,
                      const struct rawclient_connect_options *options,
                      struct mqtt_packet *connack)
{
    int rc = rawclient_open(client, port, options->version);
    if (rc != 0)
        return rc;
    static struct rawpacket packet;
    rawclient_build_connect(options, &packet);
    rc = rawclient_send_packet(client, &packet);
    if (rc != 0)
        return rc;
    return rawclient_recv(client, RAWCLIENT_TIMEOUT_MS, connack);
}

int rawclient_subscribe(struct rawclient *client, uint16_t packet_id, const char *filter,
                        uint8_t options, struct mqtt_packet *suback)
{
    static struct rawpacket packet;
    rawclient_build_subscribe(client->version, packet_id, filter, options, &packet);
    int rc = rawclient_send_packet(client, &packet);
    if (rc != 0)
        return rc;
    return rawclient_recv(client, RAWCLIENT_TIMEOUT_MS, suback);
}

int rawclient_publish(struct rawclient *client, const struct rawclient_publish_options *options)
{
    static struct rawpacket packet;
    rawclient_build_publish(client->version, options, &packet);
    return rawclient_send_packet(client, &packet);
}

int rawclient_send_ack(struct rawclient *client, uint8_t type, uint16_t packet_id)
{
    struct rawpacket packet;
    rawclient_build_ack(type, packet_id, &packet);
    return rawclient_send_packet(client, &packet);
}

bool rawclient_is_serving(uint16_t port)
{
    struct rawclient *client = malloc(sizeof(*client));
    ASSERT(client != NULL);
    struct rawclient_connect_options options = {
        .version = MQTT_V311,
        .client_id = "keelmq-integ-probe",
        .clean_start = true,
        .keepalive_s = 30,
    };
    struct mqtt_packet packet;
    bool is_serving = rawclient_connect(client, port, &options, &packet) == RAWCLIENT_OK &&
                      packet.type == MQTT_CONNACK && packet.connack.rc == MQTT_V3_ACCEPTED;
    static const uint8_t pingreq[] = { MQTT_PINGREQ << 4, 0x00 };
    is_serving = is_serving && rawclient_send(client, pingreq, sizeof(pingreq)) == 0 &&
                 rawclient_recv(client, RAWCLIENT_TIMEOUT_MS, &packet) == RAWCLIENT_OK &&
                 packet.type == MQTT_PINGRESP;
    if (is_serving) {
        static const uint8_t disconnect[] = { MQTT_DISCONNECT << 4, 0x00 };
        (void)rawclient_send(client, disconnect, sizeof(disconnect)); /* closing anyway */
    }
    rawclient_close(client);
    free(client);
    return is_serving;
}
