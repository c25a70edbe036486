/* tests/unit/test_config.c - unit tests for core/config: defaults, every key good and bad
 * (table-driven), file parsing and its error messages, -o overrides, finalize, and the
 * print-then-parse round trip.
 *
 * File tests write one temporary file under /tmp (mkstemp) and the .fini hook removes it.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

static char temp_path[64];

static void temp_remove(void)
{
    if (temp_path[0] != '\0')
        unlink(temp_path);
    temp_path[0] = '\0';
}

/* Writes `len` bytes of `content` to a new file under /tmp and returns its path. */
static const char *temp_write(const char *content, size_t len)
{
    temp_remove();
    snprintf(temp_path, sizeof(temp_path), "/tmp/keelmq_test_config_XXXXXX");
    int fd = mkstemp(temp_path);
    cr_assert_neq(fd, -1, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, content, len), (ssize_t)len);
    cr_assert_eq(close(fd), 0);
    return temp_path;
}

static const char *temp_write_text(const char *content)
{
    return temp_write(content, strlen(content));
}

/* Loads `content` as a file; returns the rc and leaves the message in `err`. The expected
 * message is built with the temporary path, since it differs on each run. */
static int load_text(struct config *cfg, const char *content, char *err)
{
    config_defaults(cfg);
    err[0] = '\0';
    return config_load_file(cfg, temp_write_text(content), err, CONFIG_ERR_MAX);
}

static void assert_load_error(const char *content, const char *expected_after_path)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    cr_assert_eq(load_text(&cfg, content, err), -EINVAL);
    char expected[CONFIG_ERR_MAX];
    snprintf(expected, sizeof(expected), "%s:%s", temp_path, expected_after_path);
    cr_assert_str_eq(err, expected);
}

/* The value config_print shows for `key`, in a static buffer. */
static const char *printed_value(const struct config *cfg, const char *key)
{
    static char value[CONFIG_STR_MAX + 8];
    char *text = NULL;
    size_t text_len = 0;
    FILE *out = open_memstream(&text, &text_len);
    cr_assert_not_null(out);
    config_print(cfg, out);
    cr_assert_eq(fclose(out), 0);
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s = ", key);
    value[0] = '\0';
    bool is_found = false;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            cr_assert_not(is_found, "key %s printed twice", key);
            snprintf(value, sizeof(value), "%s", line + strlen(prefix));
            is_found = true;
        }
    }
    free(text);
    cr_assert(is_found, "key %s not printed", key);
    return value;
}

TestSuite(config, .fini = temp_remove, .timeout = 10);

Test(config, defaults_match_the_documentation)
{
    struct config cfg;
    config_defaults(&cfg);
    cr_assert_eq(cfg.tcp_port, 1883);
    cr_assert_str_eq(cfg.tcp_bind, "0.0.0.0");
    cr_assert_eq(cfg.tcp_backlog, 4096);
    cr_assert_eq(cfg.shard_count, 0, "auto");
    cr_assert_eq(cfg.shard_max_connections, 16384);
    cr_assert_eq(cfg.shard_recv_buffer_count, 1024);
    cr_assert_eq(cfg.shard_recv_buffer_size, 4096);
    cr_assert_eq(cfg.shard_ring_entries, 4096);
    cr_assert_str_eq(cfg.store_dir, "./data");
    cr_assert_eq(cfg.store_retention_bytes, UINT64_C(10737418240), "10 GiB per shard");
    cr_assert_eq(cfg.store_retention_hours, 168, "7 days");
    cr_assert_eq(cfg.store_cache_bytes, UINT64_C(16777216), "16 MiB per shard");
    cr_assert_eq(cfg.log_level, LOG_INFO);
    cr_assert_eq(cfg.max_packet_size, 1048576);
    cr_assert_eq(cfg.max_inflight, 32);
    cr_assert_eq(cfg.max_queued_messages, 1000);
    cr_assert_eq(cfg.keepalive_max_s, 65535);
    cr_assert_eq(cfg.session_expiry_max_s, UINT32_MAX, "never");
    cr_assert_eq(cfg.max_topic_alias, 10);
    cr_assert(cfg.retain_available);
    cr_assert_eq(cfg.max_qos, 2);
    cr_assert_not(cfg.validate_utf8_payload);
    cr_assert_eq(cfg.connect_timeout_ms, 10000);
    cr_assert_eq(cfg.max_client_id_len, 256);
    cr_assert_eq(cfg.output_buffer_max, 4194304);
}

Test(config, defaults_pass_finalize)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), 0, "%s", err);
}

/* Arrays, not pointers: criterion runs each case in a new process image, where pointers into
 * the parent's string literals are not valid. */
struct set_case {
    char key[32];
    char value[32];
    int rc;
    char expect[64]; /* printed value on success, error reason on failure */
};

ParameterizedTestParameters(config, set_key_cases)
{
    static struct set_case cases[] = {
        /* listener.tcp.port: u16 0..65535. */
        { "listener.tcp.port", "0", 0, "0" },
        { "listener.tcp.port", "65535", 0, "65535" },
        { "listener.tcp.port", " \t1884 \t", 0, "1884" },
        { "listener.tcp.port", "007", 0, "7" },
        { "listener.tcp.port", "65536", -EINVAL, "out of range 0..65535" },
        { "listener.tcp.port", "99999999999999999999", -EINVAL, "out of range 0..65535" },
        { "listener.tcp.port", "-1", -EINVAL, "not a number" },
        { "listener.tcp.port", "+1", -EINVAL, "not a number" },
        { "listener.tcp.port", "0x10", -EINVAL, "not a number" },
        { "listener.tcp.port", "12abc", -EINVAL, "not a number" },
        { "listener.tcp.port", "1 2", -EINVAL, "not a number" },
        { "listener.tcp.port", "", -EINVAL, "empty value" },
        { "listener.tcp.port", "  \t ", -EINVAL, "empty value" },
        /* listener.tcp.bind: IPv4 or IPv6 literal. */
        { "listener.tcp.bind", "127.0.0.1", 0, "127.0.0.1" },
        { "listener.tcp.bind", "::1", 0, "::1" },
        { "listener.tcp.bind", "::", 0, "::" },
        { "listener.tcp.bind", "localhost", -EINVAL, "not an IPv4 or IPv6 address" },
        { "listener.tcp.bind", "1.2.3.4.5", -EINVAL, "not an IPv4 or IPv6 address" },
        /* listener.tcp.backlog: 1..65535. */
        { "listener.tcp.backlog", "1", 0, "1" },
        { "listener.tcp.backlog", "0", -EINVAL, "out of range 1..65535" },
        /* shard.count: auto or 1..256. */
        { "shard.count", "auto", 0, "auto" },
        { "shard.count", "1", 0, "1" },
        { "shard.count", "256", 0, "256" },
        { "shard.count", "0", -EINVAL, "out of range 1..256" },
        { "shard.count", "257", -EINVAL, "out of range 1..256" },
        { "shard.count", "AUTO", -EINVAL, "not \"auto\" or a number" },
        { "shard.count", "-4", -EINVAL, "not \"auto\" or a number" },
        /* shard.max_connections: 1..1048576. */
        { "shard.max_connections", "1048576", 0, "1048576" },
        { "shard.max_connections", "0", -EINVAL, "out of range 1..1048576" },
        { "shard.max_connections", "4294967296", -EINVAL, "out of range 1..1048576" },
        /* shard.recv_buffer_count: power of two 1..32768. */
        { "shard.recv_buffer_count", "1", 0, "1" },
        { "shard.recv_buffer_count", "32768", 0, "32768" },
        { "shard.recv_buffer_count", "1000", -EINVAL, "not a power of two" },
        { "shard.recv_buffer_count", "65536", -EINVAL, "out of range 1..32768" },
        /* shard.recv_buffer_size: 512..65536 (multiple of 512 checked by finalize). */
        { "shard.recv_buffer_size", "512", 0, "512" },
        { "shard.recv_buffer_size", "65536", 0, "65536" },
        { "shard.recv_buffer_size", "511", -EINVAL, "out of range 512..65536" },
        /* shard.ring_entries: power of two 2..65536. */
        { "shard.ring_entries", "2", 0, "2" },
        { "shard.ring_entries", "1", -EINVAL, "out of range 2..65536" },
        { "shard.ring_entries", "3000", -EINVAL, "not a power of two" },
        /* store.dir: string. */
        { "store.dir", "/var/lib/keelmq", 0, "/var/lib/keelmq" },
        { "store.flush", "async", 0, "async" },
        { "store.flush", "sync", 0, "sync" },
        { "store.flush", "Sync", -EINVAL, "not one of sync|async" },
        { "store.log_qos0", "off", 0, "false" },
        { "store.log_qos0", "maybe", -EINVAL, "not a boolean (true|false|yes|no|on|off|1|0)" },
        { "store.segment_bytes", "1048575", -EINVAL, "out of range 1048576..2147483648" },
        { "store.flush_interval_ms", "0", -EINVAL, "out of range 1..60000" },
        /* store.retention.bytes: u64 0..2^50 (the 2 * segment rule is checked by finalize). */
        { "store.retention.bytes", "0", 0, "0" },
        { "store.retention.bytes", "1", 0, "1" },
        { "store.retention.bytes", "4294967296", 0, "4294967296" },
        { "store.retention.bytes", "1125899906842624", 0, "1125899906842624" },
        { "store.retention.bytes", "1125899906842625", -EINVAL,
          "out of range 0..1125899906842624" },
        { "store.retention.bytes", "18446744073709551615", -EINVAL,
          "out of range 0..1125899906842624" },
        { "store.retention.bytes", "18446744073709551616", -EINVAL,
          "out of range 0..1125899906842624" },
        { "store.retention.bytes", "999999999999999999999999", -EINVAL,
          "out of range 0..1125899906842624" },
        { "store.retention.bytes", "99999999999999999999x", -EINVAL, "not a number" },
        { "store.retention.bytes", "-1", -EINVAL, "not a number" },
        { "store.retention.bytes", "10GiB", -EINVAL, "not a number" },
        { "store.retention.bytes", "", -EINVAL, "empty value" },
        /* store.cache_bytes: u64 0..2^36. */
        { "store.cache_bytes", "0", 0, "0" },
        { "store.cache_bytes", "68719476736", 0, "68719476736" },
        { "store.cache_bytes", "68719476737", -EINVAL, "out of range 0..68719476736" },
        { "store.cache_bytes", "-1", -EINVAL, "not a number" },
        /* store.retention.hours: u32 0..876000. */
        { "store.retention.hours", "0", 0, "0" },
        { "store.retention.hours", "1", 0, "1" },
        { "store.retention.hours", "876000", 0, "876000" },
        { "store.retention.hours", "876001", -EINVAL, "out of range 0..876000" },
        { "store.retention.hours", "4294967296", -EINVAL, "out of range 0..876000" },
        { "store.retention.hours", "7d", -EINVAL, "not a number" },
        { "store.dir", "  data#1 ", 0, "data#1" },
        { "store.dir", "a #b", -EINVAL, "contains '#' after a blank, which starts a comment" },
        { "store.dir", "a\nb", -EINVAL, "contains a control character" },
        /* log.level. */
        { "log.level", "error", 0, "error" },
        { "log.level", "warn", 0, "warn" },
        { "log.level", "info", 0, "info" },
        { "log.level", "debug", 0, "debug" },
        { "log.level", "INFO", -EINVAL, "not one of error|warn|info|debug" },
        { "log.level", "verbose", -EINVAL, "not one of error|warn|info|debug" },
        /* mqtt.max_packet_size: 16..268435460. */
        { "mqtt.max_packet_size", "16", 0, "16" },
        { "mqtt.max_packet_size", "268435460", 0, "268435460" },
        { "mqtt.max_packet_size", "15", -EINVAL, "out of range 16..268435460" },
        { "mqtt.max_packet_size", "268435461", -EINVAL, "out of range 16..268435460" },
        /* mqtt.max_inflight: 1..65535. */
        { "mqtt.max_inflight", "65535", 0, "65535" },
        { "mqtt.max_inflight", "0", -EINVAL, "out of range 1..65535" },
        /* mqtt.max_queued_messages: 1..1000000. */
        { "mqtt.max_queued_messages", "1000000", 0, "1000000" },
        { "mqtt.max_queued_messages", "1000001", -EINVAL, "out of range 1..1000000" },
        /* mqtt.keepalive_max: 1..65535. */
        { "mqtt.keepalive_max", "1", 0, "1" },
        { "mqtt.keepalive_max", "65536", -EINVAL, "out of range 1..65535" },
        /* mqtt.session_expiry_max: 0..4294967295 (never). */
        { "mqtt.session_expiry_max", "0", 0, "0" },
        { "mqtt.session_expiry_max", "4294967295", 0, "4294967295" },
        { "mqtt.session_expiry_max", "4294967296", -EINVAL, "out of range 0..4294967295" },
        /* mqtt.max_topic_alias: 0..65535. */
        { "mqtt.max_topic_alias", "0", 0, "0" },
        { "mqtt.max_topic_alias", "65536", -EINVAL, "out of range 0..65535" },
        /* mqtt.max_qos: 0..2. */
        { "mqtt.max_qos", "0", 0, "0" },
        { "mqtt.max_qos", "3", -EINVAL, "out of range 0..2" },
        { "mqtt.validate_utf8_payload", "on", 0, "true" },
        /* mqtt.retain_available: every boolean spelling. */
        { "mqtt.retain_available", "false", 0, "false" },
        { "mqtt.retain_available", "no", 0, "false" },
        { "mqtt.retain_available", "off", 0, "false" },
        { "mqtt.retain_available", "0", 0, "false" },
        { "mqtt.retain_available", "true", 0, "true" },
        { "mqtt.retain_available", "yes", 0, "true" },
        { "mqtt.retain_available", "on", 0, "true" },
        { "mqtt.retain_available", "1", 0, "true" },
        { "mqtt.retain_available", "TRUE", -EINVAL,
          "not a boolean (true|false|yes|no|on|off|1|0)" },
        { "mqtt.retain_available", "2", -EINVAL, "not a boolean (true|false|yes|no|on|off|1|0)" },
        /* mqtt.connect_timeout_ms: 100..3600000. */
        { "mqtt.connect_timeout_ms", "100", 0, "100" },
        { "mqtt.connect_timeout_ms", "99", -EINVAL, "out of range 100..3600000" },
        /* mqtt.max_client_id_len: 23..65535. */
        { "mqtt.max_client_id_len", "23", 0, "23" },
        { "mqtt.max_client_id_len", "22", -EINVAL, "out of range 23..65535" },
        /* mqtt.output_buffer_max: 65536..1073741824. */
        { "mqtt.output_buffer_max", "1073741824", 0, "1073741824" },
        { "mqtt.output_buffer_max", "65535", -EINVAL, "out of range 65536..1073741824" },
        /* Unknown keys. */
        { "listener.tcp.prot", "1883", -EINVAL, "unknown key" },
        { "", "1", -EINVAL, "unknown key" },
        { "Listener.tcp.port", "1883", -EINVAL, "unknown key" },
    };
    return cr_make_param_array(struct set_case, cases, ARRAY_LEN(cases));
}

ParameterizedTest(struct set_case *c, config, set_key_cases)
{
    struct config cfg;
    config_defaults(&cfg);
    char err[CONFIG_ERR_MAX] = "untouched";
    int rc = config_set(&cfg, c->key, c->value, err, sizeof(err));
    cr_assert_eq(rc, c->rc, "%s = '%s': rc %d, err '%s'", c->key, c->value, rc, err);
    if (c->rc == 0) {
        cr_assert_str_eq(printed_value(&cfg, c->key), c->expect, "%s", c->key);
    } else {
        cr_assert_str_eq(err, c->expect, "%s = '%s'", c->key, c->value);
        struct config fresh;
        config_defaults(&fresh);
        cr_assert_eq(memcmp(&cfg, &fresh, sizeof(cfg)), 0, "a rejected value changes nothing");
    }
}

Test(config, string_of_255_bytes_fits_and_256_does_not)
{
    struct config cfg;
    config_defaults(&cfg);
    char err[CONFIG_ERR_MAX];
    char value[CONFIG_STR_MAX + 1];
    memset(value, 'd', CONFIG_STR_MAX - 1);
    value[CONFIG_STR_MAX - 1] = '\0';
    cr_assert_eq(config_set(&cfg, "store.dir", value, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(cfg.store_dir, value);
    value[CONFIG_STR_MAX - 1] = 'd';
    value[CONFIG_STR_MAX] = '\0';
    cr_assert_eq(config_set(&cfg, "store.dir", value, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "too long (at most 255 bytes)");
}

Test(config, set_writes_the_struct_field)
{
    struct config cfg;
    config_defaults(&cfg);
    char err[CONFIG_ERR_MAX];
    cr_assert_eq(config_set(&cfg, "listener.tcp.port", "8883", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "log.level", "debug", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "mqtt.retain_available", "off", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "shard.count", "3", err, sizeof(err)), 0);
    cr_assert_eq(cfg.tcp_port, 8883);
    cr_assert_eq(cfg.log_level, LOG_DEBUG);
    cr_assert_not(cfg.retain_available);
    cr_assert_eq(cfg.shard_count, 3);
    cr_assert_eq(config_set(&cfg, "store.retention.bytes", "8589934593", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "store.retention.hours", "0", err, sizeof(err)), 0);
    cr_assert_eq(cfg.store_retention_bytes, UINT64_C(8589934593), "above 32 bits, not cut");
    cr_assert_eq(cfg.store_retention_hours, 0);
}

Test(config, file_with_comments_blank_lines_and_crlf_loads)
{
    static const char text[] =
        "# keelmq test configuration\n"
        "\n"
        "   \t\n"
        "listener.tcp.port = 1884\n"
        "listener.tcp.bind=::1\r\n"
        "  shard.count\t=\t4   # four shards\r\n"
        "store.dir = /srv/mq#1\n"
        "log.level = debug #\n"
        "   # indented comment\n"
        "mqtt.retain_available = no\n"
        "mqtt.max_inflight = 10\n"
        "mqtt.max_inflight = 20\n" /* the later line wins */
        "mqtt.keepalive_max = 600"; /* no final newline */
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    cr_assert_eq(load_text(&cfg, text, err), 0, "%s", err);
    cr_assert_eq(cfg.tcp_port, 1884);
    cr_assert_str_eq(cfg.tcp_bind, "::1");
    cr_assert_eq(cfg.shard_count, 4);
    cr_assert_str_eq(cfg.store_dir, "/srv/mq#1");
    cr_assert_eq(cfg.log_level, LOG_DEBUG);
    cr_assert_not(cfg.retain_available);
    cr_assert_eq(cfg.max_inflight, 20);
    cr_assert_eq(cfg.keepalive_max_s, 600);
    cr_assert_eq(cfg.tcp_backlog, 4096, "keys not in the file keep their defaults");
}

Test(config, empty_file_keeps_defaults)
{
    struct config cfg, fresh;
    char err[CONFIG_ERR_MAX];
    cr_assert_eq(load_text(&cfg, "", err), 0, "%s", err);
    config_defaults(&fresh);
    cr_assert_eq(memcmp(&cfg, &fresh, sizeof(cfg)), 0);
}

Test(config, file_unknown_key_names_file_line_and_key)
{
    assert_load_error("# header\nlistener.tcp.port = 1\nlistener.tcp.prot = 2\n",
                      "3: listener.tcp.prot: unknown key");
}

Test(config, file_bad_value_names_file_line_and_key)
{
    assert_load_error("\r\n\r\nshard.count = many\r\n", "3: shard.count: not \"auto\" or a number");
    assert_load_error("mqtt.max_inflight = 0 # none\n",
                      "1: mqtt.max_inflight: out of range 1..65535");
    assert_load_error("shard.ring_entries = 100\n", "1: shard.ring_entries: not a power of two");
}

Test(config, file_empty_value_is_rejected)
{
    assert_load_error("store.dir =\n", "1: store.dir: empty value");
    assert_load_error("\nstore.dir = # only a comment\n", "2: store.dir: empty value");
}

Test(config, file_line_without_equals_has_no_key_in_message)
{
    assert_load_error("log.level = info\nlog.level debug\n",
                      "2: missing '=' (expected key = value)");
}

Test(config, file_line_without_key_is_rejected)
{
    assert_load_error("  = 5\n", "1: missing key before '='");
}

Test(config, file_stops_at_the_first_error)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    cr_assert_eq(load_text(&cfg, "listener.tcp.port = 1\nbad\nlistener.tcp.port = 2\n", err),
                 -EINVAL);
    cr_assert_eq(cfg.tcp_port, 1);
}

Test(config, file_line_too_long_is_rejected)
{
    size_t len = 5000;
    char *text = malloc(len + 1);
    memset(text, ' ', len);
    memcpy(text, "store.dir = x", 13);
    text[len] = '\0';
    assert_load_error(text, "1: line too long (at most 4096 bytes)");
    free(text);
}

Test(config, file_with_nul_byte_is_rejected)
{
    static const char text[] = "log.level = info\nlog.level = de\0bug\n";
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    const char *path = temp_write(text, sizeof(text) - 1);
    cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), -EINVAL);
    char expected[CONFIG_ERR_MAX];
    snprintf(expected, sizeof(expected), "%s:2: contains a NUL byte", path);
    cr_assert_str_eq(err, expected);
}

Test(config, missing_file_reports_strerror)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    int rc = config_load_file(&cfg, "/tmp/keelmq_no_such_dir/keelmq.conf", err, sizeof(err));
    cr_assert_eq(rc, -ENOENT);
    cr_assert_str_eq(err, "/tmp/keelmq_no_such_dir/keelmq.conf: No such file or directory");
}

Test(config, directory_reports_strerror)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_load_file(&cfg, "/tmp", err, sizeof(err)), -EISDIR);
    cr_assert_str_eq(err, "/tmp: Is a directory");
}

Test(config, override_sets_a_key)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_set_override(&cfg, "listener.tcp.port=0", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(config_set_override(&cfg, " store.dir = /a=b ", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.tcp_port, 0);
    cr_assert_str_eq(cfg.store_dir, "/a=b", "only the first '=' separates");
}

Test(config, override_errors_name_the_key)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_set_override(&cfg, "listener.tcp.port", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "missing '=' (expected key = value)");
    cr_assert_eq(config_set_override(&cfg, "=1", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "missing key before '='");
    cr_assert_eq(config_set_override(&cfg, "nope=1", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "nope: unknown key");
    cr_assert_eq(config_set_override(&cfg, "log.level=loud", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "log.level: not one of error|warn|info|debug");
    cr_assert_eq(config_set_override(&cfg, "log.level=", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "log.level: empty value");
}

Test(config, override_after_file_wins)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    cr_assert_eq(load_text(&cfg, "mqtt.max_inflight = 5\n", err), 0, "%s", err);
    cr_assert_eq(config_set_override(&cfg, "mqtt.max_inflight=6", err, sizeof(err)), 0);
    cr_assert_eq(cfg.max_inflight, 6);
}

Test(config, finalize_resolves_auto_shard_count)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_str_eq(printed_value(&cfg, "shard.count"), "auto");
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), 0, "%s", err);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(cfg.shard_count, (uint32_t)(online > 256 ? 256 : online));
    char expected[32];
    snprintf(expected, sizeof(expected), "%u", cfg.shard_count);
    cr_assert_str_eq(printed_value(&cfg, "shard.count"), expected);
}

Test(config, finalize_keeps_explicit_shard_count)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_set(&cfg, "shard.count", "200", err, sizeof(err)), 0);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.shard_count, 200);
}

Test(config, finalize_rejects_recv_buffer_size_not_multiple_of_512)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_set(&cfg, "shard.recv_buffer_size", "1000", err, sizeof(err)), 0);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "shard.recv_buffer_size: not a multiple of 512");
}

Test(config, finalize_rejects_output_buffer_smaller_than_packet)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_set(&cfg, "mqtt.output_buffer_max", "65536", err, sizeof(err)), 0);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err,
                     "mqtt.output_buffer_max: smaller than mqtt.max_packet_size (65536 < 1048576)");
}

Test(config, finalize_accepts_retention_bytes_of_exactly_two_segments)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_set(&cfg, "store.segment_bytes", "1048576", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "mqtt.max_packet_size", "65536", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "store.retention.bytes", "2097152", err, sizeof(err)), 0);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.store_retention_bytes, 2097152);
}

Test(config, finalize_rejects_retention_bytes_below_two_segments)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_set(&cfg, "store.segment_bytes", "1048576", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "mqtt.max_packet_size", "65536", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "store.retention.bytes", "2097151", err, sizeof(err)), 0);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "store.retention.bytes: must be 0 or at least twice "
                          "store.segment_bytes (2097151 < 2 * 1048576)");
}

Test(config, finalize_checks_retention_bytes_against_the_largest_segment_size)
{
    /* 2 * 2147483648 does not fit in 32 bits: the rule must be computed in 64. */
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_set(&cfg, "store.segment_bytes", "2147483648", err, sizeof(err)), 0);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), 0, "the default 10 GiB >= 4 GiB: %s",
                 err);
    config_defaults(&cfg);
    cr_assert_eq(config_set(&cfg, "store.segment_bytes", "2147483648", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "store.retention.bytes", "4294967295", err, sizeof(err)), 0);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "store.retention.bytes: must be 0 or at least twice "
                          "store.segment_bytes (4294967295 < 2 * 2147483648)");
    cr_assert_eq(config_set(&cfg, "store.retention.bytes", "4294967296", err, sizeof(err)), 0);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), 0, "%s", err);
}

Test(config, finalize_accepts_zero_retention_as_no_limit)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(config_set(&cfg, "store.retention.bytes", "0", err, sizeof(err)), 0);
    cr_assert_eq(config_set(&cfg, "store.retention.hours", "0", err, sizeof(err)), 0);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.store_retention_bytes, 0);
    cr_assert_eq(cfg.store_retention_hours, 0);
}

Test(config, finalize_rejects_out_of_range_values_stored_by_code)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cfg.shard_max_connections = 0;
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "shard.max_connections: out of range 1..1048576");
    config_defaults(&cfg);
    cfg.shard_ring_entries = 1000;
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "shard.ring_entries: not a power of two");
    config_defaults(&cfg);
    cfg.store_retention_bytes = (UINT64_C(1) << 50) + 1;
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "store.retention.bytes: out of range 0..1125899906842624");
    config_defaults(&cfg);
    cfg.store_retention_hours = 876001;
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "store.retention.hours: out of range 0..876000");
}

Test(config, print_lists_every_key_once_in_table_order)
{
    struct config cfg;
    config_defaults(&cfg);
    char *text = NULL;
    size_t text_len = 0;
    FILE *out = open_memstream(&text, &text_len);
    config_print(&cfg, out);
    cr_assert_eq(fclose(out), 0);
    static const char expected[] = "listener.tcp.port = 1883\n"
                                   "listener.tcp.bind = 0.0.0.0\n"
                                   "listener.tcp.backlog = 4096\n"
                                   "shard.count = auto\n"
                                   "shard.max_connections = 16384\n"
                                   "shard.recv_buffer_count = 1024\n"
                                   "shard.recv_buffer_size = 4096\n"
                                   "shard.ring_entries = 4096\n"
                                   "store.dir = ./data\n"
                                   "store.segment_bytes = 134217728\n"
                                   "store.flush = sync\n"
                                   "store.flush_interval_ms = 10\n"
                                   "store.retention.bytes = 10737418240\n"
                                   "store.retention.hours = 168\n"
                                   "store.cache_bytes = 16777216\n"
                                   "store.log_qos0 = true\n"
                                   "log.level = info\n"
                                   "mqtt.max_packet_size = 1048576\n"
                                   "mqtt.max_inflight = 32\n"
                                   "mqtt.max_queued_messages = 1000\n"
                                   "mqtt.keepalive_max = 65535\n"
                                   "mqtt.session_expiry_max = 4294967295\n"
                                   "mqtt.max_topic_alias = 10\n"
                                   "mqtt.retain_available = true\n"
                                   "mqtt.max_qos = 2\n"
                                   "mqtt.validate_utf8_payload = false\n"
                                   "mqtt.connect_timeout_ms = 10000\n"
                                   "mqtt.max_client_id_len = 256\n"
                                   "mqtt.output_buffer_max = 4194304\n"
                                   "mqtt.redirect_to = \n"
                                   "mqtt.redirect_permanent = false\n"
                                   "mqtt.response_information = \n"
                                   "mqtt.p2p = false\n"
                                   "mqtt.client_id_format = any\n"
                                   "mqtt.deny_subscribe = \n"
                                   "mqtt.shared_subscriptions = true\n"
                                   "mqtt.shared_subscription_policy = round_robin\n";
    cr_assert_str_eq(text, expected);
    free(text);
}

Test(config, print_then_load_gives_the_same_config)
{
    static const char *const overrides[] = {
        "listener.tcp.port=1", "listener.tcp.bind=fe80::1", "listener.tcp.backlog=7",
        "shard.count=3", "shard.max_connections=99", "shard.recv_buffer_count=64",
        "shard.recv_buffer_size=1536", "shard.ring_entries=128", "store.dir=/tmp/x#y z",
        "store.retention.bytes=1099511627776", "store.retention.hours=1",
        "log.level=warn", "mqtt.max_packet_size=70000", "mqtt.max_inflight=9",
        "mqtt.max_queued_messages=77", "mqtt.keepalive_max=30", "mqtt.max_topic_alias=0",
        "mqtt.retain_available=off", "mqtt.connect_timeout_ms=2500",
        "mqtt.max_client_id_len=64", "mqtt.output_buffer_max=131072",
        "mqtt.redirect_to=other.example:8883", "mqtt.redirect_permanent=on",
        "mqtt.response_information=resp/", "mqtt.p2p=on", "mqtt.client_id_format=group_device",
        "mqtt.deny_subscribe=test/nosubscribe",
        "mqtt.shared_subscriptions=off", "mqtt.shared_subscription_policy=hash",
    };
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    for (size_t i = 0; i < ARRAY_LEN(overrides); i++)
        cr_assert_eq(config_set_override(&cfg, overrides[i], err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(config_finalize(&cfg, err, sizeof(err)), 0, "%s", err);

    char *text = NULL;
    size_t text_len = 0;
    FILE *out = open_memstream(&text, &text_len);
    config_print(&cfg, out);
    cr_assert_eq(fclose(out), 0);
    struct config back;
    cr_assert_eq(load_text(&back, text, err), 0, "%s", err);
    cr_assert_eq(memcmp(&cfg, &back, sizeof(cfg)), 0, "printed:\n%s", text);
    cr_assert_str_eq(back.store_dir, "/tmp/x#y z");
    cr_assert_eq(back.store_retention_bytes, UINT64_C(1099511627776));
    cr_assert_eq(back.store_retention_hours, 1);
    free(text);
}

Test(config, optional_text_may_be_empty_and_must_be_printable_ascii)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_str_eq(cfg.redirect_to, "");
    cr_assert_eq(cfg.p2p, false);
    cr_assert_eq(cfg.client_id_format, CLIENT_ID_FORMAT_ANY);
    cr_assert_eq(config_set(&cfg, "mqtt.redirect_to", "b.example:1883", err, sizeof(err)), 0);
    cr_assert_str_eq(cfg.redirect_to, "b.example:1883");
    cr_assert_eq(config_set(&cfg, "mqtt.redirect_to", "  ", err, sizeof(err)), 0);
    cr_assert_str_eq(cfg.redirect_to, "");
    cr_assert_eq(config_set(&cfg, "mqtt.response_information", "caf\xc3\xa9", err,
                            sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "not printable ASCII");
    cr_assert_eq(config_set(&cfg, "store.dir", "", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "empty value");
    cr_assert_eq(config_set(&cfg, "mqtt.client_id_format", "groups", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "not one of any|group_device");
}

Test(config, shared_subscription_keys)
{
    struct config cfg;
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    cr_assert_eq(cfg.shared_subscriptions, true);
    cr_assert_eq(cfg.shared_policy, SHARED_POLICY_ROUND_ROBIN);
    static const char *const names[] = { "round_robin", "random", "sticky", "hash" };
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(config_set(&cfg, "mqtt.shared_subscription_policy", names[i], err,
                                sizeof(err)), 0, "%s", err);
        cr_assert_eq((int)cfg.shared_policy, i);
    }
    cr_assert_eq(config_set(&cfg, "mqtt.shared_subscription_policy", "least_busy", err,
                            sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "not one of round_robin|random|sticky|hash");
    cr_assert_eq(config_set(&cfg, "mqtt.shared_subscriptions", "no", err, sizeof(err)), 0);
    cr_assert_eq(cfg.shared_subscriptions, false);
}
