# lkvm: build, run, check, bench, fuzz.
#
#   make            build lkvm and the bundled test kernel
#   make run        install missing packages, build, boot the test kernel
#   make check      install missing packages, build, run every test
#   make bench      run the benchmarks in bench/
#   make check-linux  boot Debian's kernel as a cross-check (slow here)
#   make unit       only the C unit tests (plain and sanitized)

CC      ?= gcc
O       := build
CFLAGS  := -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE \
           -Iinclude -MMD -MP -fno-strict-aliasing
LDLIBS  := -lfdt -lpthread -laio -lz -lnettle
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer

SRC     := $(wildcard builtin-*.c kvm/*.c arch/x86/*.c hw/*.c virtio/*.c \
                      util/*.c disk/*.c net/*.c kvmi/*.c)
# libkvmi-client for introspection tools: kvmi/ and the KVMI codec and
# transport it shares with lkvm; link it with -lnettle.
KVMILIB := $(O)/libkvmi.a
KVMIOBJ := $(patsubst %.c,$(O)/%.o,$(wildcard kvmi/*.c) kvm/kvmi-proto.c \
                                    kvm/kvmi-io.c)
ASM     := arch/x86/test-kernel.S
OBJ     := $(SRC:%.c=$(O)/%.o) $(ASM:%.S=$(O)/%.o)
SANOBJ  := $(SRC:%.c=$(O)/san/%.o) $(ASM:%.S=$(O)/san/%.o)
UNITSRC := $(wildcard tests/unit/test-*.c)
UNIT    := $(UNITSRC:tests/unit/%.c=$(O)/tests/%)
SANUNIT := $(UNITSRC:tests/unit/%.c=$(O)/san/tests/%)
TESTKERNEL := x86-kernel/test-kernel.elf
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

all: lkvm $(TESTKERNEL) $(KVMILIB) $(O)/guest/kvmi-agent

# lkvm is linked statically: with five shared libraries the dynamic
# loader was a third of lkvm's start-up time (bench/boot.sh).
lkvm: $(O)/main.o $(O)/liblkvm.a
	$(CC) -static -o $@ $(O)/main.o -Wl,--whole-archive $(O)/liblkvm.a \
	      -Wl,--no-whole-archive $(LDLIBS)

$(O)/liblkvm.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(KVMILIB): $(KVMIOBJ)
	@rm -f $@
	ar rcs $@ $^

$(O)/san/liblkvm.a: $(SANOBJ)
	@rm -f $@
	ar rcs $@ $^

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLKVM_VERSION='"$(VERSION)"' -c -o $@ $<

$(O)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -DLKVM_VERSION='"$(VERSION)"' -c -o $@ $<

$(O)/arch/x86/test-kernel.o $(O)/san/arch/x86/test-kernel.o: \
		arch/x86/test-kernel.S $(TESTKERNEL)
	@mkdir -p $(dir $@)
	$(CC) -c -o $@ $<

.PHONY: $(TESTKERNEL)-build
$(TESTKERNEL): $(TESTKERNEL)-build
	@$(MAKE) --no-print-directory -C x86-kernel test-kernel.elf
$(TESTKERNEL)-build: ;

# Unit tests link the library whole so that every device registers.
$(O)/tests/%: tests/unit/%.c $(O)/liblkvm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< -Wl,--whole-archive \
	      $(O)/liblkvm.a -Wl,--no-whole-archive $(LDLIBS)

$(O)/san/tests/%: tests/unit/%.c $(O)/san/liblkvm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -Itests/unit -o $@ $< -Wl,--whole-archive \
	      $(O)/san/liblkvm.a -Wl,--no-whole-archive $(LDLIBS)

# Helper programs used by tests and benchmarks.
$(O)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)
# The KVMI guest agent, for a Linux guest (docs/kvmi.md).
$(O)/guest/kvmi-agent: guest/kvmi-agent.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -static -o $@ $<

# bench/kvmi.sh's tool is an introspection tool: it links libkvmi.
$(O)/bench/kvmi-bench: bench/kvmi-bench.c $(KVMILIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(KVMILIB) $(LDLIBS)

.PHONY: all setup run check check-linux unit bench clean
setup:
	@tests/setup-deps

run: setup
	@$(MAKE) --no-print-directory all
	./lkvm run

unit: $(UNIT) $(SANUNIT)

check: setup
	@$(MAKE) --no-print-directory all unit fuzz-build $(patsubst bench/%.c,$(O)/bench/%,$(wildcard bench/*.c))
	@tests/run

# Boots Debian's cloud kernel (downloaded once) to check the Linux boot
# protocol; minutes on hosts without hardware virtualization.
check-linux: all
	@tests/linux-boot.sh

bench: all $(patsubst bench/%.c,$(O)/bench/%,$(wildcard bench/*.c))
	@for b in bench/*.sh; do $$b || exit 1; done

clean:
	rm -rf $(O) lkvm
	@$(MAKE) --no-print-directory -C x86-kernel clean 2>/dev/null || true

include fuzz/fuzz.mk

-include $(OBJ:.o=.d) $(SANOBJ:.o=.d) $(O)/main.d $(UNIT:=.d) $(SANUNIT:=.d)
