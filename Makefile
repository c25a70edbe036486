# keelmq - top-level build. `make run` and `make test` are the two commands a user needs;
# both install missing Debian packages first (scripts/deps.sh, idempotent).
#
#   make            release build (-O2 -g) into build/
#   make debug      ASan + UBSan + ASSERT_HOT, no jemalloc, into build-debug/
#   make run        build and start build/keelmq in the foreground (data in ./data)
#   make test       build and run every unit and end-to-end test
#   make test-debug the same tests against the sanitizer build (CI runs it)

MODE ?= release
ifeq ($(MODE),debug)
BUILD := build-debug
MODE_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined -DKEELMQ_DEBUG
MODE_LDFLAGS := -fsanitize=address,undefined
ALLOC_LIBS :=
else
BUILD := build
MODE_CFLAGS := -O2 -g
MODE_LDFLAGS :=
ALLOC_LIBS := -ljemalloc
endif

CC ?= gcc
BSSL_CFLAGS := -I/usr/include/android
BSSL_LIBS := -L/usr/lib/x86_64-linux-gnu/android -Wl,-rpath,/usr/lib/x86_64-linux-gnu/android \
             -lssl -lcrypto
CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-missing-field-initializers \
          -D_GNU_SOURCE -DXXH_INLINE_ALL -I. $(MODE_CFLAGS) -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS := $(MODE_LDFLAGS)
LIBS := -luring -lpthread $(ALLOC_LIBS)

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)

LIB_SRCS := $(filter-out core/main.c,$(wildcard core/*.c io/*.c store/*.c tls/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_OBJS := $(HELPER_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
INTEG_SRCS := $(wildcard tests/integ/[0-9]*.c)
INTEG_BINS := $(INTEG_SRCS:tests/integ/%.c=$(BUILD)/tests/integ/%)

.PHONY: all debug run test test-debug unit integ deps deps-test clean
all: $(BUILD)/keelmq

debug:
	$(MAKE) MODE=debug all

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

run: deps
	$(MAKE) all
	mkdir -p data
	exec $(BUILD)/keelmq $(if $(wildcard keelmq.conf),-c keelmq.conf)

$(BUILD)/libkeelmq.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/keelmq: $(BUILD)/core/main.o $(BUILD)/libkeelmq.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/core/main.o: CFLAGS += -DKEELMQ_VERSION='"$(VERSION)"'

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/libbench.a $(BUILD)/libkeelmq.a $(HELPER_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(HELPER_OBJS) $(BUILD)/libbench.a $(BUILD)/libkeelmq.a \
	    -lcriterion $(LIBS)

$(BUILD)/tests/integ/%: tests/integ/%.c $(BUILD)/libkeelmq.a $(HELPER_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(HELPER_OBJS) $(BUILD)/libkeelmq.a -lcriterion $(LIBS)

# --- bench/nullbroker: the ceiling broker that bench/compare measures against (issue 3). ---
# One file, linked against the library so it shares keelmq's io_uring layer and codec. Kept
# separate from the load generator's rules: any wildcard over bench/*.c must filter it out.
all: $(BUILD)/nullbroker
bench: $(BUILD)/nullbroker $(BUILD)/keelmq
.PHONY: bench

$(BUILD)/nullbroker: $(BUILD)/bench/nullbroker.o $(BUILD)/libkeelmq.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

-include $(BUILD)/bench/nullbroker.d
# --- end of bench/nullbroker ---

# --- keelmq-bench: the load generator (issue 3). Everything in bench/ but the mains
# goes into libbench.a, which the unit tests link too (tests/unit/test_histogram.c, ...).
BENCH_LIB_SRCS := $(filter-out bench/bench_main.c bench/nullbroker.c bench/storebench.c,\
                  $(wildcard bench/*.c))
BENCH_LIB_OBJS := $(BENCH_LIB_SRCS:%.c=$(BUILD)/%.o)
all: $(BUILD)/keelmq-bench
bench: $(BUILD)/keelmq-bench

$(BUILD)/libbench.a: $(BENCH_LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/keelmq-bench: $(BUILD)/bench/bench_main.o $(BUILD)/libbench.a $(BUILD)/libkeelmq.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/bench_report.o: CFLAGS += -DKEELMQ_VERSION='"$(VERSION)"'

-include $(BENCH_LIB_OBJS:.o=.d) $(BUILD)/bench/bench_main.d
# --- end of keelmq-bench ---

# --- keelmq-storebench: the commit log micro-benchmark with its raw-disk reference. One file,
# linked against the library (store/commitlog.h, io/uring.h, core/histogram.h) only;
# not part of libbench.a (see BENCH_LIB_SRCS). docs/benchmarks.md "Store micro-benchmark".
all: $(BUILD)/keelmq-storebench
bench: $(BUILD)/keelmq-storebench

$(BUILD)/keelmq-storebench: $(BUILD)/bench/storebench.o $(BUILD)/libkeelmq.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/storebench.o: CFLAGS += -DKEELMQ_VERSION='"$(VERSION)"'

-include $(BUILD)/bench/storebench.d
# --- end of keelmq-storebench ---

unit: $(UNIT_BINS)
integ: $(INTEG_BINS) $(BUILD)/keelmq

# The test runner prints one result line per suite and a final "N passed, N failed".
test: deps-test
	$(MAKE) all unit integ
	BUILD=$(BUILD) tests/run

test-debug: deps-test
	$(MAKE) MODE=debug all unit integ
	BUILD=build-debug tests/run

clean:
	rm -rf build build-debug

-include $(LIB_OBJS:.o=.d) $(HELPER_OBJS:.o=.d) $(BUILD)/core/main.d
