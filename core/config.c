/* core/config.c - the broker's configuration: one table of keys drives defaults, parsing,
 * validation and printing.
 *
 * Implements core/config.h. It does not open sockets or directories: store.dir and
 * listener.tcp.bind are checked for form only, and their users report what the system says.
 * Main thread only, before the shards start (process lifetime, STYLE 6).
 *
 * Every key has one row in config_keys[]: its name, type, offset into struct config, range,
 * default text and a line of help. config_defaults() parses each default text with the same
 * parser as a file, so a default can never be out of its own range, and config_print() prints
 * the rows in order, so a printed configuration parses back to the same struct. The parsing
 * is strict on purpose: a typo in a config file must stop the broker at startup with the file
 * and line, not run it with a surprising value.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_LINE_MAX 4096 /* bytes per file line, without the line ending */
#define CONFIG_KEY_MAX 64    /* longer keys cannot match any row, so they are unknown */
#define CONFIG_SHARD_MAX 256
#define CONFIG_RECV_BUFFER_ALIGN 512
#define CONFIG_STORE_BLOCK 4096u /* store/record.h RECORD_BLOCK: O_DIRECT write unit */
/* store.retention.bytes: 1 PiB of log per shard, beyond any disk a shard writes to. */
#define CONFIG_RETENTION_BYTES_MAX (UINT64_C(1) << 50)
#define CONFIG_CACHE_BYTES_MAX (UINT64_C(1) << 36) /* 64 GiB per shard */
/* store.retention.hours: 100 years; in nanoseconds (store/retention) it still fits in 62 bits. */
#define CONFIG_RETENTION_HOURS_MAX 876000u
STATIC_ASSERT((uint64_t)CONFIG_RETENTION_HOURS_MAX * 3600 * 1000000000 < UINT64_MAX / 4,
              "the age limit in nanoseconds fits in a uint64_t");

enum config_type {
    CONFIG_U16,       /* uint16_t, decimal in min..max */
    CONFIG_U32,       /* uint32_t, decimal in min..max */
    CONFIG_U64,       /* uint64_t, decimal in min..max */
    CONFIG_AUTO_U32,  /* uint32_t, "auto" (stored as 0) or decimal in min..max */
    CONFIG_BOOL,      /* bool, true|false|yes|no|on|off|1|0 */
    CONFIG_STRING,    /* char[CONFIG_STR_MAX] */
    CONFIG_ADDRESS,   /* char[CONFIG_STR_MAX] holding an IPv4 or IPv6 literal */
    CONFIG_OPT_TEXT,  /* char[CONFIG_STR_MAX], printable ASCII, may be empty (= unset): it
                       * goes into MQTT strings, which must be UTF-8 */
    CONFIG_NAMED,     /* an enum stored as int, given by one of the row's `names` */
};

struct config_key {
    const char *name;
    enum config_type type;
    size_t offset;         /* into struct config */
    uint64_t min;          /* numeric types only; within the type's range */
    uint64_t max;          /* numeric types only; within the type's range */
    bool is_power_of_two;  /* numeric types only */
    const char *default_text;
    const char *help;
    const char *const *names; /* CONFIG_NAMED: value i is names[i]; NULL-terminated */
};

#define KEY_NUMBER(name_, type_, field_, min_, max_, pow2_, default_, help_)                    \
    { name_, type_, offsetof(struct config, field_), min_, max_, pow2_, default_, help_, NULL }
#define KEY_OTHER(name_, type_, field_, default_, help_)                                       \
    { name_, type_, offsetof(struct config, field_), 0, 0, false, default_, help_, NULL }
#define KEY_NAMED(name_, field_, names_, default_, help_)                                      \
    { name_, CONFIG_NAMED, offsetof(struct config, field_), 0, 0, false, default_, help_, names_ }

static const char *const log_level_names[] = { "error", "warn", "info", "debug", NULL };
static const char *const flush_mode_names[] = { "sync", "async", NULL };
static const char *const client_id_format_names[] = { "any", "group_device", NULL };
static const char *const shared_policy_names[] = { "round_robin", "random", "sticky", "hash",
                                                   NULL };
STATIC_ASSERT(sizeof(enum log_level) == sizeof(int) && sizeof(enum store_flush) == sizeof(int) &&
              sizeof(enum client_id_format) == sizeof(int) &&
              sizeof(enum shared_policy) == sizeof(int), "CONFIG_NAMED stores an int");

/* Keep docs/configuration.md in step with this table. */
static const struct config_key config_keys[] = {
    KEY_NUMBER("listener.tcp.port", CONFIG_U16, tcp_port, 0, 65535, false, "1883",
               "MQTT over TCP port; 0 picks a free port"),
    KEY_OTHER("listener.tcp.bind", CONFIG_ADDRESS, tcp_bind, "0.0.0.0",
              "address the TCP listener binds (IPv4 or IPv6 literal)"),
    KEY_NUMBER("listener.tcp.backlog", CONFIG_U32, tcp_backlog, 1, 65535, false, "4096",
               "listen() backlog of each shard's TCP socket"),
    KEY_NUMBER("shard.count", CONFIG_AUTO_U32, shard_count, 1, CONFIG_SHARD_MAX, false, "auto",
               "number of shards (threads); auto = one per online CPU"),
    KEY_NUMBER("shard.max_connections", CONFIG_U32, shard_max_connections, 1, 1048576, false,
               "16384", "connections per shard (io_uring direct descriptors)"),
    KEY_NUMBER("shard.recv_buffer_count", CONFIG_U32, shard_recv_buffer_count, 1, 32768, true,
               "1024", "receive buffers per shard (provided-buffer ring entries)"),
    KEY_NUMBER("shard.recv_buffer_size", CONFIG_U32, shard_recv_buffer_size, 512, 65536, false,
               "4096", "bytes per receive buffer, a multiple of 512"),
    KEY_NUMBER("shard.ring_entries", CONFIG_U32, shard_ring_entries, 2, 65536, true, "4096",
               "entries of each shard-to-shard SPSC ring"),
    KEY_OTHER("store.dir", CONFIG_STRING, store_dir, "./data",
              "directory of the persistent store"),
    KEY_NUMBER("store.segment_bytes", CONFIG_U32, store_segment_bytes, 1048576, 2147483648u,
               false, "134217728",
               "commit log segment size in bytes (a multiple of 4096); logs roll at this size"),
    KEY_NAMED("store.flush", store_flush, flush_mode_names, "sync",
              "sync: QoS 1/2 acked once durable; async: acked on append, flushed periodically"),
    KEY_NUMBER("store.flush_interval_ms", CONFIG_U32, store_flush_interval_ms, 1, 60000, false,
               "10", "store.flush = async: longest time appended data waits for a flush"),
    KEY_NUMBER("store.retention.bytes", CONFIG_U64, store_retention_bytes, 0,
               CONFIG_RETENTION_BYTES_MAX, false, "10737418240",
               "bytes of commit log kept per shard (whole segments); 0 = no size limit"),
    KEY_NUMBER("store.retention.hours", CONFIG_U32, store_retention_hours, 0,
               CONFIG_RETENTION_HOURS_MAX, false, "168",
               "hours a commit log segment is kept after its last write; 0 = no time limit"),
    KEY_NUMBER("store.cache_bytes", CONFIG_U64, store_cache_bytes, 0, CONFIG_CACHE_BYTES_MAX,
               false, "16777216",
               "newest commit log bytes kept in memory per shard for catch-up reads; 0 = none"),
    KEY_OTHER("store.log_qos0", CONFIG_BOOL, store_log_qos0, "true",
              "write QoS 0 messages to the commit log (retained ones are always written)"),
    KEY_NAMED("log.level", log_level, log_level_names, "info",
              "least severe level logged: error|warn|info|debug"),
    KEY_NUMBER("mqtt.max_packet_size", CONFIG_U32, max_packet_size, 16, 268435460, false,
               "1048576", "largest MQTT packet accepted, in bytes"),
    KEY_NUMBER("mqtt.max_inflight", CONFIG_U32, max_inflight, 1, 65535, false, "32",
               "unacknowledged QoS 1/2 messages per session (receive maximum)"),
    KEY_NUMBER("mqtt.max_queued_messages", CONFIG_U32, max_queued_messages, 1, 1000000, false,
               "1000", "messages queued per session while it is offline or slow"),
    KEY_NUMBER("mqtt.keepalive_max", CONFIG_U32, keepalive_max_s, 1, 65535, false, "65535",
               "largest keepalive granted, in seconds"),
    KEY_NUMBER("mqtt.session_expiry_max", CONFIG_U32, session_expiry_max_s, 0, 4294967295u,
               false, "4294967295",
               "longest session expiry granted, in seconds; 4294967295 = sessions may never "
               "expire"),
    KEY_NUMBER("mqtt.max_topic_alias", CONFIG_U32, max_topic_alias, 0, 65535, false, "10",
               "topic aliases a client may use (MQTT 5); 0 disables them"),
    KEY_OTHER("mqtt.retain_available", CONFIG_BOOL, retain_available, "true",
              "whether retained messages are supported"),
    KEY_NUMBER("mqtt.max_qos", CONFIG_U32, max_qos, 0, 2, false, "2",
               "highest QoS accepted from and granted to clients"),
    KEY_OTHER("mqtt.validate_utf8_payload", CONFIG_BOOL, validate_utf8_payload, "false",
              "refuse PUBLISHes whose payload format indicator says UTF-8 but is not (0x99)"),
    KEY_NUMBER("mqtt.connect_timeout_ms", CONFIG_U32, connect_timeout_ms, 100, 3600000, false,
               "10000", "time a new connection has to send CONNECT, in milliseconds"),
    KEY_NUMBER("mqtt.max_client_id_len", CONFIG_U32, max_client_id_len, 23, 65535, false, "256",
               "longest client identifier accepted, in bytes"),
    KEY_NUMBER("mqtt.output_buffer_max", CONFIG_U32, output_buffer_max, 65536, 1073741824, false,
               "4194304", "bytes queued for sending per connection before it counts as slow"),
    KEY_OTHER("mqtt.redirect_to", CONFIG_OPT_TEXT, redirect_to, "",
              "server reference (host[:port]) every CONNECT is redirected to; empty = none"),
    KEY_OTHER("mqtt.redirect_permanent", CONFIG_BOOL, redirect_permanent, "false",
              "with mqtt.redirect_to: CONNACK 0x9D Server moved, not 0x9C Use another server"),
    KEY_OTHER("mqtt.response_information", CONFIG_OPT_TEXT, response_information, "",
              "Response Information sent to v5 clients that request it; empty = not sent"),
    KEY_OTHER("mqtt.p2p", CONFIG_BOOL, p2p, "false",
              "PUBLISH to {parent}/p2p/{client id} goes to that client only (no subscription)"),
    KEY_NAMED("mqtt.client_id_format", client_id_format, client_id_format_names, "any",
              "any | group_device: client ids must be GroupID@@@DeviceID (each 1..64 bytes)"),
    KEY_OTHER("mqtt.deny_subscribe", CONFIG_OPT_TEXT, deny_subscribe, "",
              "topic filter whose SUBSCRIBE is refused (SUBACK 0x80), exact match; empty = none"),
    KEY_OTHER("mqtt.shared_subscriptions", CONFIG_BOOL, shared_subscriptions, "true",
              "whether shared subscriptions ($share/{group}/{filter}) are available"),
    KEY_NAMED("mqtt.shared_subscription_policy", shared_policy, shared_policy_names,
              "round_robin",
              "member of a shared group that gets a message: round_robin|random|sticky|hash"),
};


STATIC_ASSERT(CONFIG_STR_MAX >= INET6_ADDRSTRLEN, "a bind address must fit");
STATIC_ASSERT(CONFIG_ERR_MAX > CONFIG_KEY_MAX + 128, "an error must hold a key and a reason");

/* Writes a printf-style message to `err`, which always holds at least an empty string. */
__attribute__((format(printf, 3, 4))) static void set_error(char *err, size_t err_len,
                                                             const char *fmt, ...)
{
    ASSERT(err != NULL);
    ASSERT(err_len > 0);
    va_list args;
    va_start(args, fmt);
    (void)vsnprintf(err, err_len, fmt, args); /* Truncation is fine for a message. */
    va_end(args);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_power_of_two(uint64_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/* Narrows `*text`/`*len` to exclude leading and trailing spaces and tabs. */
static void trim(const char **text, size_t *len)
{
    while (*len > 0 && is_blank((*text)[0])) {
        (*text)++;
        (*len)--;
    }
    while (*len > 0 && is_blank((*text)[*len - 1]))
        (*len)--;
}

static bool text_is(const char *text, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(text, word, len) == 0;
}

static const struct config_key *find_key(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(config_keys); i++)
        if (strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

/* Decimal digits only: no sign, no base prefix, no trailing bytes, at most UINT64_MAX.
 * Returns 0, -EINVAL (not a number) or -ERANGE (overflow). A non-digit anywhere is -EINVAL,
 * even after an overflow, so "99999999999999999999x" is not a number. */
static int parse_u64(const char *text, size_t len, uint64_t *out)
{
    ASSERT(len > 0);
    uint64_t value = 0;
    bool is_overflow = false;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -EINVAL;
        uint64_t digit = (uint64_t)(text[i] - '0');
        if (value > (UINT64_MAX - digit) / 10)
            is_overflow = true;
        else
            value = value * 10 + digit;
    }
    if (is_overflow)
        return -ERANGE;
    *out = value;
    return 0;
}

static int parse_bool(const char *text, size_t len, bool *out)
{
    static const char *const truths[] = { "true", "yes", "on", "1" };
    static const char *const falsehoods[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < ARRAY_LEN(truths); i++) {
        if (text_is(text, len, truths[i])) {
            *out = true;
            return 0;
        }
        if (text_is(text, len, falsehoods[i])) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* Parses a numeric row's value, including "auto" for CONFIG_AUTO_U32. The row's max bounds
 * the value to its field's type (config_defaults checks that of every row). */
static int set_number(const struct config_key *key, const char *text, size_t len,
                      uint64_t *out, char *err, size_t err_len)
{
    if (key->type == CONFIG_AUTO_U32 && text_is(text, len, "auto")) {
        *out = 0;
        return 0;
    }
    uint64_t value = 0;
    int rc = parse_u64(text, len, &value);
    if (rc == -EINVAL) {
        set_error(err, err_len, "%s", key->type == CONFIG_AUTO_U32 ? "not \"auto\" or a number"
                                                                   : "not a number");
        return -EINVAL;
    }
    if (rc == -ERANGE || value < key->min || value > key->max) {
        set_error(err, err_len, "out of range %" PRIu64 "..%" PRIu64, key->min, key->max);
        return -EINVAL;
    }
    if (key->is_power_of_two && !is_power_of_two(value)) {
        set_error(err, err_len, "not a power of two");
        return -EINVAL;
    }
    *out = value;
    return 0;
}

/* Strings are printed back by config_print, so they must survive a round trip through a file:
 * no control characters (a newline would end the line) and no '#' after a blank (a comment). */
static int set_string(const struct config_key *key, const char *text, size_t len, char *out,
                      char *err, size_t err_len)
{
    if (len > CONFIG_STR_MAX - 1) {
        set_error(err, err_len, "too long (at most %d bytes)", CONFIG_STR_MAX - 1);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f) {
            set_error(err, err_len, "contains a control character");
            return -EINVAL;
        }
        if (c > 0x7f && key->type == CONFIG_OPT_TEXT) {
            set_error(err, err_len, "not printable ASCII");
            return -EINVAL;
        }
        if (c == '#' && i > 0 && is_blank(text[i - 1])) {
            set_error(err, err_len, "contains '#' after a blank, which starts a comment");
            return -EINVAL;
        }
    }
    char copy[CONFIG_STR_MAX];
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (key->type == CONFIG_ADDRESS) {
        unsigned char address[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, copy, address) != 1 && inet_pton(AF_INET6, copy, address) != 1) {
            set_error(err, err_len, "not an IPv4 or IPv6 address");
            return -EINVAL;
        }
    }
    /* Zero the tail too, so two configs with equal values compare equal with memcmp. */
    memset(out, 0, CONFIG_STR_MAX);
    memcpy(out, copy, len + 1);
    return 0;
}

/* Parses the trimmed, non-empty `text` of `len` bytes into the field of `key` in `cfg`. */
static int set_value(struct config *cfg, const struct config_key *key, const char *text,
                     size_t len, char *err, size_t err_len)
{
    char *field = (char *)cfg + key->offset;
    uint64_t number = 0;
    int rc = 0;
    switch (key->type) {
    case CONFIG_U16:
        rc = set_number(key, text, len, &number, err, err_len);
        if (rc == 0)
            *(uint16_t *)field = (uint16_t)number;
        return rc;
    case CONFIG_U32:
    case CONFIG_AUTO_U32:
        rc = set_number(key, text, len, &number, err, err_len);
        if (rc == 0)
            *(uint32_t *)field = (uint32_t)number;
        return rc;
    case CONFIG_U64:
        return set_number(key, text, len, (uint64_t *)field, err, err_len);
    case CONFIG_BOOL:
        rc = parse_bool(text, len, (bool *)field);
        if (rc != 0)
            set_error(err, err_len, "not a boolean (true|false|yes|no|on|off|1|0)");
        return rc;
    case CONFIG_STRING:
    case CONFIG_ADDRESS:
    case CONFIG_OPT_TEXT:
        return set_string(key, text, len, field, err, err_len);
    case CONFIG_NAMED: {
        size_t n = 0;
        for (; key->names[n] != NULL; n++) {
            if (text_is(text, len, key->names[n])) {
                *(int *)field = (int)n;
                return 0;
            }
        }
        char choices[128] = "";
        for (size_t i = 0; i < n; i++) {
            size_t used = strlen(choices);
            snprintf(choices + used, sizeof(choices) - used, "%s%s", i ? "|" : "",
                     key->names[i]);
        }
        set_error(err, err_len, "not one of %s", choices);
        return -EINVAL;
    }
    }
    ASSERT(false && "unknown config type");
    return -EINVAL;
}

int config_set(struct config *cfg, const char *key, const char *value, char *err,
               size_t err_len)
{
    ASSERT(cfg != NULL);
    ASSERT(key != NULL && value != NULL);
    const struct config_key *row = find_key(key);
    if (row == NULL) {
        set_error(err, err_len, "unknown key");
        return -EINVAL;
    }
    size_t len = strlen(value);
    trim(&value, &len);
    if (len == 0 && row->type == CONFIG_OPT_TEXT) {
        memset((char *)cfg + row->offset, 0, CONFIG_STR_MAX);
        return 0;
    }
    if (len == 0) {
        set_error(err, err_len, "empty value");
        return -EINVAL;
    }
    return set_value(cfg, row, value, len, err, err_len);
}

/* The largest value a numeric row's field can hold, so its max can be checked against it. */
static uint64_t type_max(enum config_type type)
{
    switch (type) {
    case CONFIG_U16:
        return UINT16_MAX;
    case CONFIG_U32:
    case CONFIG_AUTO_U32:
        return UINT32_MAX;
    case CONFIG_U64:
        return UINT64_MAX;
    default:
        return 0; /* not numeric: min and max are 0 */
    }
}

void config_defaults(struct config *cfg)
{
    ASSERT(cfg != NULL);
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
        /* A max beyond the field's type would let set_value truncate: a bug in the table. */
        ASSERT(config_keys[i].max <= type_max(config_keys[i].type));
        ASSERT(config_keys[i].min <= config_keys[i].max);
        char err[CONFIG_ERR_MAX];
        int rc = config_set(cfg, config_keys[i].name, config_keys[i].default_text, err,
                            sizeof(err));
        ASSERT(rc == 0); /* A default outside its own range is a bug in config_keys[]. */
    }
}

/* Splits `text` of `len` bytes at its first '=' into a trimmed key (copied to `key_out`, NUL-
 * terminated, cut at CONFIG_KEY_MAX bytes so an overlong key stays unknown) and the value that
 * follows. Returns 0, or -EINVAL with the reason in `err`. */
static int split_assignment(const char *text, size_t len, char key_out[CONFIG_KEY_MAX + 2],
                            const char **value_out, char *err, size_t err_len)
{
    const char *equals = memchr(text, '=', len);
    if (equals == NULL) {
        set_error(err, err_len, "missing '=' (expected key = value)");
        return -EINVAL;
    }
    const char *key = text;
    size_t key_len = (size_t)(equals - text);
    trim(&key, &key_len);
    if (key_len == 0) {
        set_error(err, err_len, "missing key before '='");
        return -EINVAL;
    }
    key_len = MIN(key_len, (size_t)CONFIG_KEY_MAX + 1);
    memcpy(key_out, key, key_len);
    key_out[key_len] = '\0';
    *value_out = equals + 1;
    return 0;
}

int config_set_override(struct config *cfg, const char *arg, char *err, size_t err_len)
{
    ASSERT(cfg != NULL);
    ASSERT(arg != NULL);
    char key[CONFIG_KEY_MAX + 2];
    const char *value = NULL;
    if (split_assignment(arg, strlen(arg), key, &value, err, err_len) != 0)
        return -EINVAL;
    char reason[CONFIG_ERR_MAX];
    if (config_set(cfg, key, value, reason, sizeof(reason)) != 0) {
        set_error(err, err_len, "%s: %s", key, reason);
        return -EINVAL;
    }
    return 0;
}

enum line_status {
    LINE_OK,
    LINE_END_OF_FILE, /* nothing read */
    LINE_TOO_LONG,
    LINE_HAS_NUL,
    LINE_READ_ERROR, /* errno is set */
};

/* Reads one line without its "\n" or "\r\n" into `line` (NUL-terminated, at most
 * CONFIG_LINE_MAX bytes). A last line without a newline still counts as a line. */
static enum line_status read_line(FILE *file, char line[CONFIG_LINE_MAX + 2], size_t *len_out)
{
    size_t len = 0;
    int c;
    errno = 0;
    while ((c = getc(file)) != EOF && c != '\n') {
        if (c == '\0')
            return LINE_HAS_NUL;
        if (len == CONFIG_LINE_MAX + 1) /* Room for a '\r' that a "\r\n" ending removes. */
            return LINE_TOO_LONG;
        line[len++] = (char)c;
    }
    if (c == EOF && ferror(file))
        return LINE_READ_ERROR;
    if (c == EOF && len == 0)
        return LINE_END_OF_FILE;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len > CONFIG_LINE_MAX)
        return LINE_TOO_LONG;
    line[len] = '\0';
    *len_out = len;
    return LINE_OK;
}

/* Length of `line` before its comment: a '#' at the start or after a blank. */
static size_t strip_comment(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] == '#' && (i == 0 || is_blank(line[i - 1])))
            return i;
    return len;
}

/* Applies one line of a file. Returns 0, or -EINVAL with "FILE:LINE: ..." in `err`. */
static int load_line(struct config *cfg, const char *path, uint32_t line_number, char *line,
                     size_t len, char *err, size_t err_len)
{
    len = strip_comment(line, len);
    line[len] = '\0';
    const char *text = line;
    trim(&text, &len);
    if (len == 0)
        return 0;
    char key[CONFIG_KEY_MAX + 2];
    const char *value = NULL;
    char reason[CONFIG_ERR_MAX];
    if (split_assignment(text, len, key, &value, reason, sizeof(reason)) != 0) {
        set_error(err, err_len, "%s:%u: %s", path, line_number, reason);
        return -EINVAL;
    }
    if (config_set(cfg, key, value, reason, sizeof(reason)) != 0) {
        set_error(err, err_len, "%s:%u: %s: %s", path, line_number, key, reason);
        return -EINVAL;
    }
    return 0;
}

int config_load_file(struct config *cfg, const char *path, char *err, size_t err_len)
{
    ASSERT(cfg != NULL);
    ASSERT(path != NULL);
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        int saved = errno;
        set_error(err, err_len, "%s: %s", path, strerror(saved));
        return -saved;
    }
    char line[CONFIG_LINE_MAX + 2]; /* +2: a '\r' before the newline, and the NUL. */
    uint32_t line_number = 0;
    int rc = 0;
    while (rc == 0) {
        size_t len = 0;
        enum line_status status = read_line(file, line, &len);
        line_number++;
        if (status == LINE_END_OF_FILE)
            break;
        if (status == LINE_READ_ERROR) {
            int saved = errno != 0 ? errno : EIO;
            set_error(err, err_len, "%s: %s", path, strerror(saved));
            rc = -saved;
        } else if (status == LINE_TOO_LONG) {
            set_error(err, err_len, "%s:%u: line too long (at most %d bytes)", path,
                      line_number, CONFIG_LINE_MAX);
            rc = -EINVAL;
        } else if (status == LINE_HAS_NUL) {
            set_error(err, err_len, "%s:%u: contains a NUL byte", path, line_number);
            rc = -EINVAL;
        } else {
            rc = load_line(cfg, path, line_number, line, len, err, err_len);
        }
    }
    (void)fclose(file); /* Read-only stream: nothing to lose on close. */
    return rc;
}

/* Writes the effective text of `key`'s field in `cfg` to `out`. */
static void format_value(const struct config *cfg, const struct config_key *key, char *out,
                         size_t out_len)
{
    const char *field = (const char *)cfg + key->offset;
    switch (key->type) {
    case CONFIG_U16:
        snprintf(out, out_len, "%u", (unsigned)*(const uint16_t *)field);
        return;
    case CONFIG_U32:
        snprintf(out, out_len, "%u", *(const uint32_t *)field);
        return;
    case CONFIG_U64:
        snprintf(out, out_len, "%" PRIu64, *(const uint64_t *)field);
        return;
    case CONFIG_AUTO_U32: {
        uint32_t value = *(const uint32_t *)field;
        if (value == 0)
            snprintf(out, out_len, "auto");
        else
            snprintf(out, out_len, "%u", value);
        return;
    }
    case CONFIG_BOOL:
        snprintf(out, out_len, "%s", *(const bool *)field ? "true" : "false");
        return;
    case CONFIG_STRING:
    case CONFIG_ADDRESS:
    case CONFIG_OPT_TEXT:
        /* The precision bounds the read if code stored an unterminated string. */
        snprintf(out, out_len, "%.*s", CONFIG_STR_MAX, field);
        return;
    case CONFIG_NAMED: {
        int v = *(const int *)field;
        size_t n = 0;
        while (key->names[n] != NULL)
            n++;
        snprintf(out, out_len, "%s", v >= 0 && (size_t)v < n ? key->names[v] : "?");
        return;
    }
    }
    ASSERT(false && "unknown config type");
}

void config_print(const struct config *cfg, FILE *out)
{
    ASSERT(cfg != NULL);
    ASSERT(out != NULL);
    for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
        char value[CONFIG_STR_MAX + 8];
        format_value(cfg, &config_keys[i], value, sizeof(value));
        fprintf(out, "%s = %s\n", config_keys[i].name, value);
    }
}

/* Re-parses every field's printed value, so values that code (not the parser) stored are held
 * to the same ranges as values from a file. */
static int finalize_check_fields(const struct config *cfg, char *err, size_t err_len)
{
    for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
        char value[CONFIG_STR_MAX + 8];
        format_value(cfg, &config_keys[i], value, sizeof(value));
        struct config scratch;
        char reason[CONFIG_ERR_MAX];
        if (config_set(&scratch, config_keys[i].name, value, reason, sizeof(reason)) != 0) {
            set_error(err, err_len, "%s: %s", config_keys[i].name, reason);
            return -EINVAL;
        }
    }
    return 0;
}

int config_finalize(struct config *cfg, char *err, size_t err_len)
{
    ASSERT(cfg != NULL);
    int rc = finalize_check_fields(cfg, err, err_len);
    if (rc != 0)
        return rc;
    if (cfg->shard_count == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        if (online == -1) {
            int saved = errno;
            set_error(err, err_len, "shard.count: cannot count online CPUs: %s",
                      strerror(saved));
            return -EINVAL;
        }
        /* More CPUs than shards allowed: use the first CONFIG_SHARD_MAX. */
        cfg->shard_count = (uint32_t)MIN(MAX(online, 1L), (long)CONFIG_SHARD_MAX);
    }
    ASSERT(cfg->shard_count >= 1 && cfg->shard_count <= CONFIG_SHARD_MAX);
    if (cfg->shard_max_connections < 1) {
        set_error(err, err_len, "shard.max_connections: must be at least 1");
        return -EINVAL;
    }
    if (cfg->shard_recv_buffer_size % CONFIG_RECV_BUFFER_ALIGN != 0) {
        set_error(err, err_len, "shard.recv_buffer_size: not a multiple of %d",
                  CONFIG_RECV_BUFFER_ALIGN);
        return -EINVAL;
    }
    if (cfg->store_segment_bytes % CONFIG_STORE_BLOCK != 0) {
        set_error(err, err_len, "store.segment_bytes: not a multiple of %u", CONFIG_STORE_BLOCK);
        return -EINVAL;
    }
    /* A record never spans segments: the largest message plus its header and a block of
     * padding must fit in one. */
    if ((uint64_t)cfg->store_segment_bytes < (uint64_t)cfg->max_packet_size * 2 + 2 * 4096) {
        set_error(err, err_len,
                  "store.segment_bytes: must be at least twice mqtt.max_packet_size plus 8192 "
                  "(%u < 2 * %u + 8192)", cfg->store_segment_bytes, cfg->max_packet_size);
        return -EINVAL;
    }
    /* Retention keeps whole segments and never deletes the one being written, so a limit below
     * two segments would delete every closed segment the moment it closes. */
    if (cfg->store_retention_bytes != 0 &&
        cfg->store_retention_bytes < 2 * (uint64_t)cfg->store_segment_bytes) {
        set_error(err, err_len,
                  "store.retention.bytes: must be 0 or at least twice store.segment_bytes "
                  "(%" PRIu64 " < 2 * %u)", cfg->store_retention_bytes, cfg->store_segment_bytes);
        return -EINVAL;
    }
    if (cfg->output_buffer_max < cfg->max_packet_size) {
        set_error(err, err_len,
                  "mqtt.output_buffer_max: smaller than mqtt.max_packet_size (%u < %u)",
                  cfg->output_buffer_max, cfg->max_packet_size);
        return -EINVAL;
    }
    return 0;
}
