/* core/config.h - the broker's configuration: defaults, sysctl-style file, -o overrides.
 *
 * Process lifetime: the main thread fills a struct config before the shards start; after that
 * it is read-only and every shard may read it. File syntax: one `key = value` per line, `#`
 * starts a comment (whole line or after whitespace), blank lines ignored, dotted key names.
 * Every key is listed in docs/configuration.md and printed by config_print().
 */
#ifndef KEELMQ_CORE_CONFIG_H
#define KEELMQ_CORE_CONFIG_H

#include <stdio.h>

#include "core/base.h"

#define CONFIG_STR_MAX 256
#define CONFIG_ERR_MAX 512

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN = 1,
    LOG_INFO = 2,
    LOG_DEBUG = 3,
};

enum store_flush {
    STORE_FLUSH_SYNC = 0,
    STORE_FLUSH_ASYNC = 1,
};

enum client_id_format {
    CLIENT_ID_FORMAT_ANY = 0,
    CLIENT_ID_FORMAT_GROUP_DEVICE = 1, /* GroupID@@@DeviceID (core/iot.h) */
};

/* How a shared subscription group picks the member that gets a message (core/shared.h). */
enum shared_policy {
    SHARED_POLICY_ROUND_ROBIN = 0,
    SHARED_POLICY_RANDOM = 1,
    SHARED_POLICY_STICKY = 2,    /* one member while it stays online */
    SHARED_POLICY_HASH = 3,      /* by publisher client id: its messages stay in order */
};

struct config {
    /* listener.tcp.* */
    uint16_t tcp_port;                   /* listener.tcp.port, 1883; 0 = pick a free port */
    char tcp_bind[CONFIG_STR_MAX];       /* listener.tcp.bind, 0.0.0.0 (IPv4 or IPv6 literal) */
    uint32_t tcp_backlog;                /* listener.tcp.backlog, 4096 */
    /* shard.* */
    uint32_t shard_count;                /* shard.count, 0 = auto (online CPUs), 1..256 */
    uint32_t shard_max_connections;      /* shard.max_connections, 16384 (direct descriptors) */
    uint32_t shard_recv_buffer_count;    /* shard.recv_buffer_count, 1024, power of two */
    uint32_t shard_recv_buffer_size;     /* shard.recv_buffer_size, 4096, 512..65536 */
    uint32_t shard_ring_entries;         /* shard.ring_entries, 4096: SPSC entries per shard pair */
    /* store.* */
    char store_dir[CONFIG_STR_MAX];      /* store.dir, ./data */
    uint32_t store_segment_bytes;        /* store.segment_bytes, 134217728, multiple of 4096 */
    enum store_flush store_flush;        /* store.flush, sync|async */
    uint32_t store_flush_interval_ms;    /* store.flush_interval_ms, 10 (async only) */
    bool store_log_qos0;                 /* store.log_qos0, true */
    uint64_t store_retention_bytes;      /* store.retention.bytes, 10737418240 per shard; 0 = no
                                          * size limit, else at least 2 * store.segment_bytes */
    uint32_t store_retention_hours;      /* store.retention.hours, 168; 0 = no time limit */
    uint64_t store_cache_bytes;          /* store.cache_bytes, 16777216 per shard; 0 = none */
    /* log.* */
    enum log_level log_level;            /* log.level, info: error|warn|info|debug */
    /* mqtt.* */
    uint32_t max_packet_size;            /* mqtt.max_packet_size, 1048576, 16..268435460 */
    uint32_t max_inflight;               /* mqtt.max_inflight, 32, 1..65535 */
    uint32_t max_queued_messages;        /* mqtt.max_queued_messages, 1000 per session */
    uint32_t keepalive_max_s;            /* mqtt.keepalive_max, 65535, 1..65535 */
    uint32_t session_expiry_max_s;       /* mqtt.session_expiry_max, 4294967295 (never) */
    uint32_t max_topic_alias;            /* mqtt.max_topic_alias, 10, 0..65535 */
    bool retain_available;               /* mqtt.retain_available, true */
    uint32_t max_qos;                    /* mqtt.max_qos, 2, 0..2 */
    bool validate_utf8_payload;          /* mqtt.validate_utf8_payload, false */
    uint32_t connect_timeout_ms;         /* mqtt.connect_timeout_ms, 10000 */
    uint32_t max_client_id_len;          /* mqtt.max_client_id_len, 256, 23..65535 */
    uint32_t output_buffer_max;          /* mqtt.output_buffer_max, 4194304 bytes per connection */
    char redirect_to[CONFIG_STR_MAX];    /* mqtt.redirect_to, "" = serve; else CONNACK 0x9C/0x9D */
    bool redirect_permanent;             /* mqtt.redirect_permanent, false: 0x9C; true: 0x9D */
    char response_information[CONFIG_STR_MAX]; /* mqtt.response_information, "" = not sent */
    bool p2p;                            /* mqtt.p2p, false: {parent}/p2p/{id} topics (iot.h) */
    enum client_id_format client_id_format; /* mqtt.client_id_format, any|group_device */
    char deny_subscribe[CONFIG_STR_MAX]; /* mqtt.deny_subscribe, "" = none; else a filter refused */
    bool shared_subscriptions;           /* mqtt.shared_subscriptions, true: $share/{group}/... */
    enum shared_policy shared_policy;    /* mqtt.shared_subscription_policy, round_robin */
};

/* Fills `cfg` with every default. */
void config_defaults(struct config *cfg);

/* Sets one key from its text value. Returns 0, or -EINVAL with a reason in `err`
 * ("unknown key", "not a number", "out of range 1..65535", ...). */
int config_set(struct config *cfg, const char *key, const char *value, char *err,
               size_t err_len);

/* Parses a "key=value" command-line override (-o). Returns 0 or -EINVAL with `err`. */
int config_set_override(struct config *cfg, const char *arg, char *err, size_t err_len);

/* Loads a file. Returns 0, or a negative errno with `err` of the form
 * "FILE:LINE: KEY: reason" (or "FILE: strerror" when it cannot be read). */
int config_load_file(struct config *cfg, const char *path, char *err, size_t err_len);

/* Checks relations between keys and resolves `auto` values. Returns 0 or -EINVAL with `err`. */
int config_finalize(struct config *cfg, char *err, size_t err_len);

/* Prints every key with its effective value, one `key = value` per line, in a stable order. */
void config_print(const struct config *cfg, FILE *out);

#endif
