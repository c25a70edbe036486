/* tests/helpers/rawclient.h - a raw-packet MQTT test client: exact bytes out, decoded frames in.
 *
 * The client sends whatever bytes a test gives it (valid or garbage) over a blocking TCP socket
 * to 127.0.0.1, and receives with poll() deadlines: one complete frame at a time, framed by
 * codec_frame() and decoded by codec_decode() from core/codec.h, or the peer's close.
 * The builders encode common valid packets by hand (not with codec_encode(), so the tests do
 * not share a bug with the encoder they exercise); malformed packets are written by the tests
 * themselves as commented byte arrays.
 *
 * It does no MQTT state keeping (no automatic acks, no keepalive). Test code only; one client
 * is used by one thread.
 */
#ifndef KEELMQ_TESTS_HELPERS_RAWCLIENT_H
#define KEELMQ_TESTS_HELPERS_RAWCLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/codec.h"

#define RAWCLIENT_IN_CAP (256u * 1024u)  /* largest frame a test can receive */
#define RAWCLIENT_TIMEOUT_MS 5000u        /* default wait for an expected answer */
#define RAWCLIENT_PACKET_CAP 4096u        /* builders' output in struct rawpacket */

/* Results of the receiving calls; 0 is success, the rest are negative. */
enum rawclient_result {
    RAWCLIENT_OK = 0,
    RAWCLIENT_TIMEOUT = -1,    /* nothing (complete) arrived before the deadline */
    RAWCLIENT_CLOSED = -2,     /* the peer closed the connection (EOF or reset) */
    RAWCLIENT_BAD_FRAME = -3,  /* bytes arrived that codec_frame/codec_decode reject */
    RAWCLIENT_DATA = -4,       /* rawclient_await_close(): bytes arrived instead of a close */
    RAWCLIENT_ERROR = -5,      /* local socket error */
};

struct rawclient {
    int fd;                    /* -1 when not open */
    uint8_t version;           /* enum mqtt_version used to decode what the broker sends */
    bool has_peer_closed;
    enum mqtt_rc decode_rc;    /* codec_decode() result of the last frame */
    uint32_t in_len;           /* received bytes not yet returned as a frame */
    uint32_t frame_len;
    uint8_t in[RAWCLIENT_IN_CAP];
    uint8_t frame[RAWCLIENT_IN_CAP]; /* the last frame returned; decoded packets borrow it */
};

/* An encoded packet (builders' output). */
struct rawpacket {
    uint32_t len;
    uint8_t bytes[RAWCLIENT_PACKET_CAP];
};

struct rawclient_connect_options {
    uint8_t version;           /* MQTT_V31 ("MQIsdp"), MQTT_V311 or MQTT_V5 */
    const char *client_id;     /* "" for an empty client id; NULL is treated as "" */
    bool clean_start;          /* clean session (v3) / clean start (v5) */
    uint16_t keepalive_s;
    uint32_t session_expiry;   /* v5 only: written as a property when non-zero */
};

struct rawclient_publish_options {
    const char *topic;
    const void *payload;
    uint32_t payload_len;
    uint8_t qos;
    bool dup;
    bool retain;
    uint16_t packet_id;        /* written when qos > 0 */
};

/* Opens a TCP connection to 127.0.0.1:`port` into `client` (caller-owned; large, make it
 * static or heap-allocate). `version` is used to decode received frames. Returns 0 or
 * -errno. */
int rawclient_open(struct rawclient *client, uint16_t port, uint8_t version);

/* Closes the socket (abruptly, no DISCONNECT). Safe on a closed client. */
void rawclient_close(struct rawclient *client);

/* Sends all `len` bytes of `bytes` (borrowed). Returns 0 or -errno (-EPIPE / -ECONNRESET when
 * the peer has closed; no SIGPIPE is raised). */
int rawclient_send(struct rawclient *client, const void *bytes, uint32_t len);
int rawclient_send_packet(struct rawclient *client, const struct rawpacket *packet);

/* Receives one complete frame within `timeout_ms` and decodes it into `out`, whose slices
 * borrow client->frame until the next receive. Returns RAWCLIENT_OK, RAWCLIENT_TIMEOUT,
 * RAWCLIENT_CLOSED or RAWCLIENT_BAD_FRAME (client->decode_rc says why). */
int rawclient_recv(struct rawclient *client, uint32_t timeout_ms, struct mqtt_packet *out);

/* Waits up to `timeout_ms` for the peer to close. Returns RAWCLIENT_CLOSED, RAWCLIENT_DATA if
 * any byte arrived first (it stays buffered for rawclient_recv), or RAWCLIENT_TIMEOUT. */
int rawclient_await_close(struct rawclient *client, uint32_t timeout_ms);

/* Name of a result or of a packet type, for failure messages. Static strings. */
const char *rawclient_result_name(int result);
const char *rawclient_type_name(uint8_t type);

/* Builders: encode a valid packet into `out`. ASSERT on options that do not fit. */
void rawclient_build_connect(const struct rawclient_connect_options *options,
                             struct rawpacket *out);
void rawclient_build_publish(uint8_t version, const struct rawclient_publish_options *options,
                             struct rawpacket *out);
/* SUBSCRIBE with one filter and its options byte (QoS in the low bits). */
void rawclient_build_subscribe(uint8_t version, uint16_t packet_id, const char *filter,
                               uint8_t options, struct rawpacket *out);
/* PUBACK, PUBREC, PUBREL (flags 0x2) or PUBCOMP with reason code 0 (omitted on v5). */
void rawclient_build_ack(uint8_t type, uint16_t packet_id, struct rawpacket *out);

/* Conveniences: open, send CONNECT and receive the answer into `connack` (check its type and
 * rc). Returns 0, -errno from open or send, or a receive result. */
int rawclient_connect(struct rawclient *client, uint16_t port,
                      const struct rawclient_connect_options *options,
                      struct mqtt_packet *connack);
/* Sends SUBSCRIBE for one filter and receives the answer into `suback`. */
int rawclient_subscribe(struct rawclient *client, uint16_t packet_id, const char *filter,
                        uint8_t options, struct mqtt_packet *suback);
int rawclient_publish(struct rawclient *client, const struct rawclient_publish_options *options);
int rawclient_send_ack(struct rawclient *client, uint8_t type, uint16_t packet_id);

/* Returns true if a new v3.1.1 client can connect (CONNACK accepted) and get a PINGRESP on
 * `port`: the check that a broker is still serving after a bad client. */
bool rawclient_is_serving(uint16_t port);

#endif
