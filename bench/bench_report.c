/* bench/bench_report.c - verdict, summary and JSON output of a keelmq-bench run. Main thread. */
#include "bench/bench_report.h"

#include <errno.h>
#include <string.h>
#include <sys/utsname.h>

#include "core/mqtt.h"

#ifndef KEELMQ_VERSION
#define KEELMQ_VERSION "unknown" /* the Makefile passes `git describe` */
#endif

bool bench_report_passed(const struct bench_result *r, char *why, size_t why_len)
{
    const struct {
        uint64_t count;
        const char *what;
    } checks[] = {
        { r->failures, "connection failures" }, { r->lost, "messages lost" },
        { r->track.duplicated, "messages duplicated" },
        { r->track.unexpected, "messages delivered to a non-matching receiver" },
        { r->corrupt, "payloads with a corrupt stamp" },
    };
    for (size_t i = 0; i < ARRAY_LEN(checks); i++) {
        if (checks[i].count > 0) {
            snprintf(why, why_len, "%llu %s", (unsigned long long)checks[i].count,
                     checks[i].what);
            return false;
        }
    }
    return true;
}

static double per_s(uint64_t count, double seconds)
{
    return seconds > 0 ? (double)count / seconds : 0.0;
}

static double latency_us(const struct bench_result *r, double percentile)
{
    return (double)histogram_percentile(&r->latency_ns, percentile) / 1e3;
}

static double connect_per_s(const struct bench_result *r)
{
    return per_s(r->connack_count, (double)r->connect_ns / 1e9);
}

static double rss_per_conn_bytes(const struct bench_result *r)
{
    if (!r->has_broker || r->connections == 0)
        return 0;
    double grown_kib = (double)r->broker_rss_after_kib - (double)r->broker_rss_before_kib;
    return grown_kib * 1024.0 / r->connections;
}

void bench_report_print(const struct bench_options *o, const struct bench_result *r, FILE *out)
{
    double s = r->measured_s;
    fprintf(out, "\n== keelmq-bench %s: %u connections ready", o->scenario ==
            BENCH_SCENARIO_CONN ? "conn" : "pubsub", r->connections);
    if (o->scenario == BENCH_SCENARIO_CONN)
        fprintf(out, ", %.0f CONNACK/s over %.2f s\n", connect_per_s(r),
                (double)r->connect_ns / 1e9);
    else
        fprintf(out, " (%u publishers, %u subscribers, MQTT %s QoS %u, %u B, %s)\n",
                o->publisher_count, o->subscriber_count, o->mqtt_version == MQTT_V5 ? "5" :
                "3.1.1", o->qos, o->payload_len, o->rate > 0 ? "open loop" : "closed loop");
    if (o->scenario == BENCH_SCENARIO_PUBSUB) {
        fprintf(out, "   measured %.2f s: sent %.0f/s  received %.0f/s  acked %.0f/s\n", s,
                per_s(r->sent, s), per_s(r->received, s), per_s(r->acked, s));
        fprintf(out, "   latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f"
                "  (%llu samples, from the %s send time)\n", latency_us(r, 50),
                latency_us(r, 90), latency_us(r, 99), latency_us(r, 99.9),
                (double)r->latency_ns.max / 1e3, (unsigned long long)r->latency_ns.total_count,
                o->rate > 0 ? "intended" : "actual");
        fprintf(out, "   whole run: sent %llu, expected deliveries %llu, received %llu: "
                "lost %llu, duplicated %llu, reordered %llu, unexpected %llu, corrupt %llu, "
                "foreign %llu\n",
                (unsigned long long)r->sent_total, (unsigned long long)r->expected_total,
                (unsigned long long)r->track.received, (unsigned long long)r->lost,
                (unsigned long long)r->track.duplicated, (unsigned long long)r->track.reordered,
                (unsigned long long)r->track.unexpected, (unsigned long long)r->corrupt,
                (unsigned long long)r->foreign);
    } else {
        fprintf(out, "   held %.2f s; %u connections still up at the end\n", s,
                r->connections_at_end);
    }
    if (r->has_broker) {
        fprintf(out, "   broker: cpu %.2f s (%.0f deliveries per cpu-second), rss %llu KiB "
                "(was %llu KiB", r->broker_cpu_s,
                r->broker_cpu_s > 0 ? (double)r->received / r->broker_cpu_s : 0.0,
                (unsigned long long)r->broker_rss_after_kib,
                (unsigned long long)r->broker_rss_before_kib);
        if (o->scenario == BENCH_SCENARIO_CONN)
            fprintf(out, ", %.0f B per connection", rss_per_conn_bytes(r));
        fprintf(out, ")\n");
    }
    char why[160];
    if (bench_report_passed(r, why, sizeof(why))) {
        fprintf(out, "   OK\n");
        return;
    }
    fprintf(out, "\n   !!! FAILED: %s !!!\n", why);
    if (r->first_failure[0] != '\0')
        fprintf(out, "   first failure: %s\n", r->first_failure);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* The first "model name" of /proc/cpuinfo, or "unknown". */
static void cpu_model(char *out, size_t out_len)
{
    snprintf(out, out_len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (f == NULL)
        return;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || colon == NULL)
            continue;
        snprintf(out, out_len, "%s", colon + 2);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(f);
}

static void json_params(FILE *f, const struct bench_options *o)
{
    fprintf(f, "  \"scenario\": \"%s\",\n  \"parameters\": {\"host\": ",
            o->scenario == BENCH_SCENARIO_CONN ? "conn" : "pubsub");
    json_string(f, o->host);
    fprintf(f, ", \"port\": %u, \"mqtt\": %u, \"qos\": %u, \"payload\": %u, \"publishers\": %u, "
            "\"subscribers\": %u, \"topic\": ", o->port, o->mqtt_version == MQTT_V5 ? 5 : 3,
            o->qos, o->payload_len, o->publisher_count, o->subscriber_count);
    json_string(f, o->topic);
    fprintf(f, ", \"filter\": ");
    json_string(f, o->filter);
    fprintf(f, ", \"inflight\": %u, \"rate\": %.0f, \"clean\": %u, \"keepalive\": %u, "
            "\"duration\": %.3f, \"warmup\": %.3f, \"connections\": %u, \"sources\": %u, "
            "\"broker_pid\": %d},\n", o->inflight, o->rate, o->clean, o->keepalive_s,
            o->duration_s, o->warmup_s, o->connection_count, o->source_count, o->broker_pid);
    struct utsname u;
    if (uname(&u) == 0) {
        fprintf(f, "  \"kernel\": ");
        json_string(f, u.release);
        fprintf(f, ",\n");
    }
    char cpu[128];
    cpu_model(cpu, sizeof(cpu));
    fprintf(f, "  \"cpu\": ");
    json_string(f, cpu);
    fprintf(f, ",\n  \"bench_version\": ");
    json_string(f, KEELMQ_VERSION);
    fprintf(f, ",\n");
}

int bench_report_json(const struct bench_options *o, const struct bench_result *r,
                      const char *path)
{
    FILE *f = fopen(path, "we");
    if (f == NULL)
        return -errno;
    double s = r->measured_s;
    char why[160] = "";
    bool passed = bench_report_passed(r, why, sizeof(why));
    fprintf(f, "{\n");
    json_params(f, o);
    fprintf(f, "  \"measured_s\": %.3f,\n  \"sent_per_s\": %.1f,\n  \"received_per_s\": %.1f,\n"
            "  \"acked_per_s\": %.1f,\n", s, per_s(r->sent, s), per_s(r->received, s),
            per_s(r->acked, s));
    fprintf(f, "  \"latency_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, "
            "\"max\": %.1f, \"samples\": %llu},\n", latency_us(r, 50), latency_us(r, 90),
            latency_us(r, 99), latency_us(r, 99.9), (double)r->latency_ns.max / 1e3,
            (unsigned long long)r->latency_ns.total_count);
    fprintf(f, "  \"sent\": %llu,\n  \"received\": %llu,\n  \"acked\": %llu,\n"
            "  \"sent_total\": %llu,\n  \"received_total\": %llu,\n  \"expected_total\": %llu,\n",
            (unsigned long long)r->sent, (unsigned long long)r->received,
            (unsigned long long)r->acked, (unsigned long long)r->sent_total,
            (unsigned long long)r->track.received, (unsigned long long)r->expected_total);
    fprintf(f, "  \"lost\": %llu,\n  \"duplicated\": %llu,\n  \"reordered\": %llu,\n"
            "  \"unexpected\": %llu,\n  \"corrupt\": %llu,\n  \"foreign\": %llu,\n",
            (unsigned long long)r->lost, (unsigned long long)r->track.duplicated,
            (unsigned long long)r->track.reordered, (unsigned long long)r->track.unexpected,
            (unsigned long long)r->corrupt, (unsigned long long)r->foreign);
    fprintf(f, "  \"connections\": %u,\n  \"connections_at_end\": %u,\n"
            "  \"connect_per_s\": %.1f,\n  \"connect_s\": %.3f,\n  \"failures\": %llu,\n"
            "  \"first_failure\": ", r->connections, r->connections_at_end, connect_per_s(r),
            (double)r->connect_ns / 1e9, (unsigned long long)r->failures);
    json_string(f, r->first_failure);
    if (r->has_broker)
        fprintf(f, ",\n  \"broker_cpu_s\": %.3f,\n  \"broker_rss_kib\": %llu,\n"
                "  \"broker_rss_before_kib\": %llu,\n  \"rss_per_conn_bytes\": %.1f,\n"
                "  \"deliveries_per_broker_cpu_s\": %.1f", r->broker_cpu_s,
                (unsigned long long)r->broker_rss_after_kib,
                (unsigned long long)r->broker_rss_before_kib, rss_per_conn_bytes(r),
                r->broker_cpu_s > 0 ? (double)r->received / r->broker_cpu_s : 0.0);
    else
        fprintf(f, ",\n  \"broker_cpu_s\": null,\n  \"broker_rss_kib\": null,\n"
                "  \"rss_per_conn_bytes\": null");
    fprintf(f, ",\n  \"passed\": %s,\n  \"verdict\": ", passed ? "true" : "false");
    json_string(f, passed ? "ok" : why);
    fprintf(f, "\n}\n");
    int rc = ferror(f) ? -EIO : 0;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}
