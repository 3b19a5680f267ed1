# morphcat build.  `make` builds ./morphcat.  `make check` and `make demo` first install what they need
# from Debian (tools/install-deps.sh, idempotent, as root), then build, then test or run.

MC_ARCH ?= native
OPT     ?= -O3
CC      := gcc
PKGS    := libzip libcjson openblas
PY      := /usr/bin/python3

CFLAGS  = $(OPT) -g -march=$(MC_ARCH) -std=gnu11 -fno-math-errno -Wall -Wextra -Werror -Wno-format-truncation \
          -Iinclude -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -MMD -MP
LDLIBS  = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypto -lm -lpthread

B        := build
LIB_SRC  := $(wildcard nn/*.c io/*.c jobs/*.c) $(filter-out pipeline/main.c,$(wildcard pipeline/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

.PHONY: all deps check demo bench clean format
all: morphcat $(UNIT_BIN) $(BENCH_BIN)

morphcat: $(B)/obj/pipeline/main.o $(B)/libmorphcat.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/libmorphcat.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/tests/%: tests/unit/%.c $(B)/libmorphcat.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(B)/libmorphcat.a $(LDLIBS)

$(B)/bench/%: bench/%.c $(B)/libmorphcat.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(B)/libmorphcat.a $(LDLIBS)

deps:
	sh tools/install-deps.sh

check: deps
	$(MAKE) all
	sh tests/run.sh

demo: deps
	$(MAKE) all
	sh tools/demo.sh

bench: deps
	$(MAKE) all
	sh bench/run.sh

format:
	clang-format -i $(wildcard include/*.h nn/*.[ch] io/*.[ch] pipeline/*.[ch] jobs/*.[ch] tests/unit/*.c bench/*.c)

clean:
	rm -rf $(B) morphcat

-include $(LIB_OBJ:.o=.d) $(B)/obj/pipeline/main.d
