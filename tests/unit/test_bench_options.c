/* tests/unit/test_bench_options.c - keelmq-bench's command line (bench/bench_options):
 * defaults, every option in both spellings, the ranges, the payload/stamp check, topic and
 * filter patterns, and pattern expansion.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <string.h>

#include "bench/bench_options.h"
#include "bench/stamp.h"
#include "core/mqtt.h"

TestSuite(bench_options);

#define ARGV(...) ((char *[]){ "keelmq-bench", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *[]){ "keelmq-bench", __VA_ARGS__ }) / sizeof(char *)))
#define PARSE(o, err, ...) \
    bench_options_parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (o), (err), sizeof(err))

Test(bench_options, pubsub_defaults)
{
    struct bench_options o;
    char err[256] = "";
    cr_assert_eq(PARSE(&o, err, "pubsub"), 0, "%s", err);
    cr_expect_eq(o.scenario, BENCH_SCENARIO_PUBSUB);
    cr_expect_str_eq(o.host, "127.0.0.1");
    cr_expect_eq(o.port, 1883);
    cr_expect_eq(o.mqtt_version, MQTT_V311);
    cr_expect_eq(o.qos, 0);
    cr_expect_eq(o.payload_len, 16);
    cr_expect_eq(o.publisher_count, 1);
    cr_expect_eq(o.subscriber_count, 1);
    cr_expect_str_eq(o.topic, "t/%i");
    cr_expect_str_eq(o.filter, "t/%i");
    cr_expect_eq(o.inflight, 16);
    cr_expect(o.rate == 0.0);
    cr_expect(o.clean);
    cr_expect_eq(o.keepalive_s, 60);
    cr_expect(o.duration_s == 10.0);
    cr_expect(o.warmup_s == 1.0);
    cr_expect_eq(o.source_count, 1);
    cr_expect_eq(o.broker_pid, 0);
    cr_expect_str_eq(o.json_path, "");
}

Test(bench_options, conn_default_filter)
{
    struct bench_options o;
    char err[256] = "";
    cr_assert_eq(PARSE(&o, err, "conn", "--connections", "200"), 0, "%s", err);
    cr_expect_eq(o.scenario, BENCH_SCENARIO_CONN);
    cr_expect_eq(o.connection_count, 200);
    cr_expect_str_eq(o.filter, "c/%i");
}

Test(bench_options, every_option)
{
    struct bench_options o;
    char err[256] = "";
    int rc = PARSE(&o, err, "pubsub", "--host", "127.0.0.2", "--port=2883", "--mqtt", "5",
                   "--qos", "2", "--payload", "1024", "--publishers", "10",
                   "--subscribers=20", "--topic", "a/%i/b", "--filter", "a/+/b", "--inflight",
                   "64", "--rate", "50000", "--clean", "0", "--keepalive", "30", "--duration",
                   "2.5", "--warmup", "0", "--connections", "7", "--sources", "4",
                   "--broker-pid", "1234", "--json", "/tmp/x.json");
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect_str_eq(o.host, "127.0.0.2");
    cr_expect_eq(o.port, 2883);
    cr_expect_eq(o.mqtt_version, MQTT_V5);
    cr_expect_eq(o.qos, 2);
    cr_expect_eq(o.payload_len, 1024);
    cr_expect_eq(o.publisher_count, 10);
    cr_expect_eq(o.subscriber_count, 20);
    cr_expect_str_eq(o.topic, "a/%i/b");
    cr_expect_str_eq(o.filter, "a/+/b");
    cr_expect_eq(o.inflight, 64);
    cr_expect(o.rate == 50000.0);
    cr_expect_not(o.clean);
    cr_expect_eq(o.keepalive_s, 30);
    cr_expect(o.duration_s == 2.5);
    cr_expect(o.warmup_s == 0.0);
    cr_expect_eq(o.connection_count, 7);
    cr_expect_eq(o.source_count, 4);
    cr_expect_eq(o.broker_pid, 1234);
    cr_expect_str_eq(o.json_path, "/tmp/x.json");
}

Test(bench_options, shared_filter_is_accepted)
{
    struct bench_options o;
    char err[256] = "";
    cr_expect_eq(PARSE(&o, err, "pubsub", "--filter", "$share/g/t/#"), 0, "%s", err);
    cr_expect_eq(PARSE(&o, err, "pubsub", "--filter", "t/#", "--publishers", "100"), 0);
}

Test(bench_options, help)
{
    struct bench_options o;
    char err[256] = "";
    cr_expect_eq(PARSE(&o, err, "--help"), 1);
    cr_expect_eq(PARSE(&o, err, "pubsub", "--qos", "1", "--help"), 1);
    cr_expect_neq(strstr(bench_options_usage(), "--broker-pid"), NULL);
}

Test(bench_options, payload_smaller_than_stamp_is_rejected)
{
    struct bench_options o;
    char err[256] = "";
    cr_expect_eq(PARSE(&o, err, "pubsub", "--payload", "15"), -EINVAL);
    cr_expect_neq(strstr(err, "stamp"), NULL, "message: %s", err);
    cr_expect_eq(PARSE(&o, err, "pubsub", "--payload", "16"), 0);
    STATIC_ASSERT(STAMP_LEN == 16, "the test assumes a 16-byte stamp");
}

/* Arrays, not pointers: criterion runs each parameter in a re-executed process, where the
 * addresses of string literals differ. */
struct bad_case {
    char args[3][24];
    char message_part[24];
};

ParameterizedTestParameters(bench_options, bad_values)
{
    static struct bad_case cases[] = {
        { { "pubsub", "--qos", "3" }, "--qos" },
        { { "pubsub", "--mqtt", "4" }, "--mqtt" },
        { { "pubsub", "--port", "0" }, "--port" },
        { { "pubsub", "--port", "65536" }, "--port" },
        { { "pubsub", "--port", "12x" }, "--port" },
        { { "pubsub", "--publishers", "-1" }, "--publishers" },
        { { "pubsub", "--publishers", "0" }, "publishers" },
        { { "pubsub", "--subscribers", "0" }, "subscribers" },
        { { "pubsub", "--inflight", "0" }, "--inflight" },
        { { "pubsub", "--inflight", "65536" }, "--inflight" },
        { { "pubsub", "--clean", "2" }, "--clean" },
        { { "pubsub", "--rate", "-5" }, "--rate" },
        { { "pubsub", "--rate", "nan" }, "--rate" },
        { { "pubsub", "--duration", "0" }, "--duration" },
        { { "pubsub", "--sources", "0" }, "--sources" },
        { { "pubsub", "--sources", "251" }, "--sources" },
        { { "pubsub", "--connections", "0" }, "--connections" },
        { { "pubsub", "--broker-pid", "0" }, "--broker-pid" },
        { { "pubsub", "--topic", "t/+" }, "--topic" },
        { { "pubsub", "--topic", "t/%d" }, "--topic" },
        { { "pubsub", "--filter", "t/#/x" }, "--filter" },
        { { "pubsub", "--filter", "$share//t" }, "--filter" },
        { { "pubsub", "--frobnicate", "1" }, "unknown option" },
        { { "pubsub", "--qos" }, "needs a value" },
        { { "pubsub", "stray" }, "unexpected argument" },
        { { "publish" }, "unknown scenario" },
    };
    return cr_make_param_array(struct bad_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_case *c, bench_options, bad_values)
{
    char *argv[5] = { "keelmq-bench" };
    int argc = 1;
    for (int i = 0; i < 3 && c->args[i][0] != '\0'; i++)
        argv[argc++] = c->args[i];
    struct bench_options o;
    char err[256] = "";
    cr_expect_eq(bench_options_parse(argc, argv, &o, err, sizeof(err)), -EINVAL, "%s %s",
                 c->args[0], c->args[1]);
    cr_expect_neq(strstr(err, c->message_part), NULL, "message '%s' lacks '%s'", err,
                  c->message_part);
}

Test(bench_options, missing_scenario)
{
    char *argv[] = { "keelmq-bench", NULL };
    struct bench_options o;
    char err[256] = "";
    cr_expect_eq(bench_options_parse(1, argv, &o, err, sizeof(err)), -EINVAL);
    cr_expect_neq(strstr(err, "scenario"), NULL);
}

Test(bench_options, pattern_expansion)
{
    char out[32];
    cr_expect_eq(bench_pattern_expand("t/%i", 42, out, sizeof(out)), 4);
    cr_expect_str_eq(out, "t/42");
    cr_expect_eq(bench_pattern_expand("%i/%i", 7, out, sizeof(out)), 3);
    cr_expect_str_eq(out, "7/7");
    cr_expect_eq(bench_pattern_expand("100%%/x", 1, out, sizeof(out)), 6);
    cr_expect_str_eq(out, "100%/x");
    cr_expect_eq(bench_pattern_expand("plain", 1, out, sizeof(out)), 5);
    cr_expect_eq(bench_pattern_expand("t/%x", 1, out, sizeof(out)), -1);
    cr_expect_eq(bench_pattern_expand("t/%", 1, out, sizeof(out)), -1);
    cr_expect_eq(bench_pattern_expand("t/%i", 4000000000u, out, 8), -1); /* does not fit */
    cr_expect_eq(bench_pattern_expand("t/%i", 4000000000u, out, 13), 12);
}
