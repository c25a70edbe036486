/* bench/bench_options.c - keelmq-bench command line parsing and topic pattern expansion.
 * Main thread only; pure apart from writing into the caller's structs.
 */
#include "bench/bench_options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/stamp.h"
#include "core/mqtt.h"
#include "core/topic.h"

static const char usage_text[] =
    "usage: keelmq-bench conn|pubsub [options]\n"
    "\n"
    "scenarios:\n"
    "  pubsub   P publishers and S subscribers: p2p (P=S, topic t/%i, filter t/%i), fan-out\n"
    "           (--publishers 1 --topic t/x --filter t/x), fan-in (--filter 't/#'), shared\n"
    "           subscriptions (--filter '$share/g/t/#')\n"
    "  conn     open --connections N connections, each subscribed to --filter, hold them\n"
    "\n"
    "options (defaults in brackets):\n"
    "  --host ADDR          broker IPv4 address [127.0.0.1]\n"
    "  --port N             broker port [1883]\n"
    "  --mqtt 3|5           protocol: 3 = MQTT 3.1.1, 5 = MQTT 5.0 [3]\n"
    "  --qos 0|1|2          publish and subscription QoS [0]\n"
    "  --payload BYTES      payload size, at least 16 (the stamp) [16]\n"
    "  --publishers N       [1]\n"
    "  --subscribers N      [1]\n"
    "  --topic PATTERN      publish topic, %i = publisher index [t/%i]\n"
    "  --filter PATTERN     subscription filter, %i = subscriber index [the topic; conn: c/%i]\n"
    "  --inflight W         unacknowledged QoS 1/2 messages per publisher [16]\n"
    "  --rate MSGS_PER_S    0 = closed loop; else open loop at this total rate [0]\n"
    "  --clean 0|1          clean session / clean start [1]\n"
    "  --keepalive S        [60]\n"
    "  --duration S         measured time [10]\n"
    "  --warmup S           unmeasured time before it [1]\n"
    "  --connections N      conn scenario: connections to open [1000]\n"
    "  --sources K          bind to 127.0.0.1 .. 127.0.0.K round-robin (loopback hosts) [1]\n"
    "  --broker-pid PID     report the broker's CPU time and RSS from /proc\n"
    "  --json FILE          write every figure as JSON\n"
    "  --help\n"
    "\n"
    "Exits 1 when a message was lost or duplicated or a connection failed, 2 on bad usage.\n";

const char *bench_options_usage(void)
{
    return usage_text;
}

int bench_pattern_expand(const char *pattern, uint32_t idx, char *out, size_t out_cap)
{
    size_t len = 0;
    for (const char *p = pattern; *p != '\0'; p++) {
        char piece[16];
        size_t piece_len;
        if (*p != '%') {
            piece[0] = *p;
            piece_len = 1;
        } else if (p[1] == 'i') {
            piece_len = (size_t)snprintf(piece, sizeof(piece), "%u", idx);
            p++;
        } else if (p[1] == '%') {
            piece[0] = '%';
            piece_len = 1;
            p++;
        } else {
            return -1;
        }
        if (len + piece_len + 1 > out_cap)
            return -1;
        memcpy(out + len, piece, piece_len);
        len += piece_len;
    }
    if (out_cap == 0)
        return -1;
    out[len] = '\0';
    return (int)len;
}

static int fail(char *err, size_t err_len, const char *fmt, const char *a, const char *b)
{
    snprintf(err, err_len, fmt, a, b);
    return -EINVAL;
}

/* Parses a whole decimal number in [lo, hi]. */
static bool parse_u64(const char *text, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (text[0] < '0' || text[0] > '9')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *text, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool copy_str(const char *text, char *out, size_t cap)
{
    size_t n = strlen(text);
    if (n == 0 || n >= cap)
        return false;
    memcpy(out, text, n + 1);
    return true;
}

static void set_defaults(struct bench_options *o)
{
    memset(o, 0, sizeof(*o));
    strcpy(o->host, "127.0.0.1");
    o->port = 1883;
    o->mqtt_version = MQTT_V311;
    o->payload_len = 16;
    o->publisher_count = 1;
    o->subscriber_count = 1;
    strcpy(o->topic, "t/%i");
    o->inflight = 16;
    o->clean = true;
    o->keepalive_s = 60;
    o->duration_s = 10.0;
    o->warmup_s = 1.0;
    o->connection_count = 1000;
    o->source_count = 1;
}

/* Applies one option. Returns false when `value` is out of range for `name`; *known is false
 * when `name` is no option at all. */
static bool apply_option(struct bench_options *o, const char *name, const char *value,
                         bool *has_filter, bool *known)
{
    uint64_t u = 0;
    *known = true;
    if (strcmp(name, "host") == 0)
        return copy_str(value, o->host, sizeof(o->host));
    if (strcmp(name, "port") == 0 && parse_u64(value, 1, 65535, &u))
        return o->port = (uint16_t)u, true;
    if (strcmp(name, "mqtt") == 0 && (strcmp(value, "3") == 0 || strcmp(value, "5") == 0))
        return o->mqtt_version = value[0] == '3' ? MQTT_V311 : MQTT_V5, true;
    if (strcmp(name, "qos") == 0 && parse_u64(value, 0, 2, &u))
        return o->qos = (uint8_t)u, true;
    if (strcmp(name, "payload") == 0 && parse_u64(value, 0, BENCH_PAYLOAD_MAX, &u))
        return o->payload_len = (uint32_t)u, true;
    if (strcmp(name, "publishers") == 0 && parse_u64(value, 0, BENCH_CLIENTS_MAX, &u))
        return o->publisher_count = (uint32_t)u, true;
    if (strcmp(name, "subscribers") == 0 && parse_u64(value, 0, BENCH_CLIENTS_MAX, &u))
        return o->subscriber_count = (uint32_t)u, true;
    if (strcmp(name, "topic") == 0)
        return copy_str(value, o->topic, sizeof(o->topic));
    if (strcmp(name, "filter") == 0)
        return *has_filter = true, copy_str(value, o->filter, sizeof(o->filter));
    if (strcmp(name, "inflight") == 0 && parse_u64(value, 1, BENCH_INFLIGHT_MAX, &u))
        return o->inflight = (uint32_t)u, true;
    if (strcmp(name, "rate") == 0)
        return parse_double(value, 0.0, BENCH_RATE_MAX, &o->rate);
    if (strcmp(name, "clean") == 0 && parse_u64(value, 0, 1, &u))
        return o->clean = u == 1, true;
    if (strcmp(name, "keepalive") == 0 && parse_u64(value, 0, 65535, &u))
        return o->keepalive_s = (uint16_t)u, true;
    if (strcmp(name, "duration") == 0)
        return parse_double(value, 0.001, BENCH_DURATION_MAX_S, &o->duration_s);
    if (strcmp(name, "warmup") == 0)
        return parse_double(value, 0.0, BENCH_DURATION_MAX_S, &o->warmup_s);
    if (strcmp(name, "connections") == 0 && parse_u64(value, 1, BENCH_CLIENTS_MAX, &u))
        return o->connection_count = (uint32_t)u, true;
    if (strcmp(name, "sources") == 0 && parse_u64(value, 1, BENCH_SOURCES_MAX, &u))
        return o->source_count = (uint32_t)u, true;
    if (strcmp(name, "broker-pid") == 0 && parse_u64(value, 1, 4194304, &u))
        return o->broker_pid = (int)u, true;
    if (strcmp(name, "json") == 0)
        return copy_str(value, o->json_path, sizeof(o->json_path));
    static const char *const names[] = {
        "port", "mqtt", "qos", "payload", "publishers", "subscribers", "inflight",
        "clean", "keepalive", "connections", "sources", "broker-pid",
    };
    *known = false;
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (strcmp(name, names[i]) == 0)
            *known = true;
    return false;
}

/* Checks what single options cannot: patterns, the stamp, counts per scenario. */
static int check_options(const struct bench_options *o, char *err, size_t err_len)
{
    char expanded[BENCH_TOPIC_EXPANDED_LEN_MAX];
    if (o->payload_len < STAMP_LEN) {
        snprintf(err, err_len,
                 "--payload %u is too small: every payload starts with a %u-byte stamp "
                 "(publisher, sequence number, send time), so it must be at least %u bytes",
                 o->payload_len, STAMP_LEN, STAMP_LEN);
        return -EINVAL;
    }
    int n = bench_pattern_expand(o->topic, 0, expanded, sizeof(expanded));
    if (n <= 0 || !topic_name_valid((struct slice){ (const uint8_t *)expanded, (uint32_t)n }))
        return fail(err, err_len, "--topic '%s' is not a valid topic name pattern (%s)", o->topic,
                    "no wildcards; %i is the publisher index, %% a percent sign");
    n = bench_pattern_expand(o->filter, 0, expanded, sizeof(expanded));
    struct slice f = { (const uint8_t *)expanded, (uint32_t)(n > 0 ? n : 0) };
    struct slice group, real;
    int shared = n > 0 ? topic_shared_parse(f, &group, &real) : -1;
    if (shared < 0 || !topic_filter_valid(shared == 1 ? real : f))
        return fail(err, err_len, "--filter '%s' is not a valid topic filter pattern (%s)",
                    o->filter, "%i is the subscriber index, %% a percent sign");
    if (o->scenario == BENCH_SCENARIO_PUBSUB) {
        if (o->publisher_count == 0 || o->subscriber_count == 0)
            return fail(err, err_len, "pubsub needs --publishers and --subscribers >= 1%s%s",
                        "", "");
        if ((uint64_t)o->publisher_count + o->subscriber_count > BENCH_CLIENTS_MAX)
            return fail(err, err_len, "--publishers + --subscribers must not exceed %s%s",
                        "1048576", "");
        if (o->publisher_count - 1u > STAMP_PUBLISHER_MAX)
            return fail(err, err_len, "--publishers must not exceed %s%s", "16777216", "");
    }
    return 0;
}

int bench_options_parse(int argc, char **argv, struct bench_options *out, char *err,
                        size_t err_len)
{
    set_defaults(out);
    if (argc < 2)
        return fail(err, err_len, "missing scenario: conn or pubsub (see --help)%s%s", "", "");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return 1;
    if (strcmp(argv[1], "conn") == 0)
        out->scenario = BENCH_SCENARIO_CONN;
    else if (strcmp(argv[1], "pubsub") == 0)
        out->scenario = BENCH_SCENARIO_PUBSUB;
    else
        return fail(err, err_len, "unknown scenario '%s': expected conn or pubsub%s", argv[1], "");
    bool has_filter = false;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return 1;
        if (strncmp(arg, "--", 2) != 0)
            return fail(err, err_len, "unexpected argument '%s'%s", arg, "");
        char name[32];
        const char *eq = strchr(arg + 2, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (name_len == 0 || name_len >= sizeof(name))
            return fail(err, err_len, "unknown option '%s'%s", arg, "");
        memcpy(name, arg + 2, name_len);
        name[name_len] = '\0';
        const char *value = eq != NULL ? eq + 1 : NULL;
        if (value == NULL) {
            if (i + 1 >= argc)
                return fail(err, err_len, "option --%s needs a value%s", name, "");
            value = argv[++i];
        }
        bool known = true;
        if (!apply_option(out, name, value, &has_filter, &known)) {
            if (!known)
                return fail(err, err_len, "unknown option --%s%s (see --help)", name, "");
            return fail(err, err_len, "bad value '%s' for --%s (see --help for the range)",
                        value, name);
        }
    }
    if (!has_filter)
        strcpy(out->filter, out->scenario == BENCH_SCENARIO_CONN ? "c/%i" : out->topic);
    return check_options(out, err, err_len);
}
