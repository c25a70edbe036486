# tests/e2e/test_storebench_smoke.py - a short run of build/keelmq-storebench (the commit log
# micro-benchmark, docs/benchmarks.md "Store micro-benchmark"): every phase for a fraction of a
# second on the real disk under build/scratch/, small segments so rolls happen too.
# Asserts exit status 0, the JSON fields that the docs quote, that the temporary directory is
# gone afterwards, and exit status 2 for bad usage. No timing assertions: the figures depend
# on the machine.
#
# Runs with /usr/bin/python3 (tests/run); BUILD selects the build directory.

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import REPO_ROOT

RUN_TIMEOUT_S = 60
LATENCY_FIELDS = ["count", "p50", "p90", "p99", "p999", "max"]
APPEND_FIELDS = ["flush", "records_per_s", "payload_mb_per_s", "log_mb_per_s", "disk_mb_per_s",
                 "ratio_to_raw", "writes", "avg_write_kib", "syncs"]
COMMIT_FIELDS = ["publishers", "inflight", "records_per_s", "records", "writes",
                 "records_per_write", "payload_mb_per_s", "disk_mb_per_s", "ratio_to_raw",
                 "payload_ratio_to_raw", "segment_rolls", "meets_target", "latency_us"]
MACHINE_FIELDS = ["kernel", "cpu_model", "cpus", "fs_type", "fs_device", "dir"]


def storebench_binary():
    build = os.environ.get("BUILD", "build")
    return os.path.join(REPO_ROOT, build, "keelmq-storebench")


class StorebenchSmoke(unittest.TestCase):
    def setUp(self):
        if not os.access(storebench_binary(), os.X_OK):
            raise AssertionError("%s not found: run make" % storebench_binary())
        scratch = os.path.join(REPO_ROOT, "build", "scratch")
        os.makedirs(scratch, exist_ok=True)
        # The real disk, not tmpfs: the benchmark opens its files with O_DIRECT.
        self.parent = tempfile.mkdtemp(prefix="storebench-smoke-", dir=scratch)

    def tearDown(self):
        shutil.rmtree(self.parent, ignore_errors=True)

    def run_storebench(self, *args):
        argv = [storebench_binary(), "--dir", self.parent] + list(args)
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
        return done.returncode, done.stdout.decode("utf-8", "replace")

    def test_every_phase_writes_its_json_fields(self):
        path = os.path.join(self.parent, "result.json")
        status, output = self.run_storebench(
            "--duration", "0.3", "--warmup", "0.1", "--publishers", "1,8", "--inflight", "2",
            "--segment-mb", "4", "--raw-mb", "16", "--size", "100", "--json", path)
        self.assertEqual(status, 0, output)
        with open(path) as handle:
            result = json.load(handle)
        for field in MACHINE_FIELDS:
            self.assertIn(field, result["machine"], output)
        self.assertGreaterEqual(result["machine"]["cpus"], 1, output)
        self.assertEqual(result["parameters"]["publishers"], [1, 8], output)
        raw = result["raw"]
        self.assertGreater(raw["write_1m_qd4"]["mb_per_s"], 0, output)
        for name in ["dsync_4k_qd1", "dsync_4k_qd1_overwrite"]:
            self.assertGreater(raw[name]["writes_per_s"], 0, output)
            for field in LATENCY_FIELDS:
                self.assertIn(field, raw[name]["latency_us"], output)
        self.assertEqual([a["flush"] for a in result["append"]], ["sync", "async"], output)
        for append in result["append"]:
            for field in APPEND_FIELDS:
                self.assertIn(field, append, output)
            self.assertGreater(append["records_per_s"], 0, output)
        self.assertEqual([c["publishers"] for c in result["commit"]], [1, 8], output)
        for commit in result["commit"]:
            for field in COMMIT_FIELDS:
                self.assertIn(field, commit, output)
            self.assertGreater(commit["records"], 0, output)
            self.assertGreater(commit["latency_us"]["p99"], 0, output)
        self.assertIn("met", result["target"], output)
        self.assertIn("commit latency", output)
        # Only our own JSON is left: the benchmark removed its storebench-XXXXXX directory.
        self.assertEqual(os.listdir(self.parent), ["result.json"], output)

    def test_bad_usage_exits_2(self):
        for args in (["--size", "x"], ["--phases", "disk"], ["--publishers", "0"],
                     ["--bogus"], ["--duration"]):
            status, output = self.run_storebench(*args)
            self.assertEqual(status, 2, "%s: %s" % (args, output))
            self.assertIn("--help", output)

    def test_help_exits_0(self):
        status, output = self.run_storebench("--help")
        self.assertEqual(status, 0, output)
        for option in ["--dir", "--size", "--duration", "--warmup", "--publishers",
                       "--inflight", "--segment-mb", "--flush-interval-ms", "--raw-mb",
                       "--phases", "--json"]:
            self.assertIn(option, output)


if __name__ == "__main__":
    unittest.main()
