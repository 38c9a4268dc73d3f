# lkvm: build, run, check, bench, fuzz.
#
#   make            build lkvm and the bundled test kernel
#   make run        install missing packages, build, boot the test kernel
#   make check      install missing packages, build, run every test
#   make bench      run the benchmarks in bench/
#   make soak       the soak test for SOAK_SECONDS (default 300)
#   make check-linux  boot Debian's kernel as a cross-check (slow here)
#   make unit       only the C unit tests (plain and sanitized)
#   make install    PREFIX (default /usr/local) and DESTDIR; make uninstall

CC      ?= gcc
O       := build
CFLAGS  := -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE \
           -Iinclude -MMD -MP -fno-strict-aliasing
LDLIBS  := -lfdt -lpthread -laio -lz -lnettle -lseccomp
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

# lkvm-slirp runs libslirp for -n mode=user: a separate, dynamic program
# because Debian ships libslirp and glib only as shared libraries
# (docs/net.md). Built when libslirp-dev is there.
SLIRP   := $(if $(shell pkg-config --exists slirp 2>/dev/null && echo y),lkvm-slirp)
all: $(SLIRP)
lkvm-slirp: net/slirp/lkvm-slirp.c
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) $(shell pkg-config --cflags slirp) \
	      -o $@ $< $(shell pkg-config --libs slirp)

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

# System call names for the seccomp report (kvm/seccomp.c), from the
# kernel headers: its SIGSYS handler must not look anything up.
$(O)/gen/syscall-names.h:
	@mkdir -p $(dir $@)
	echo '#include <asm/unistd.h>' | $(CC) -E -dM - | sed -n \
	  's/^#define __NR_\([a-z0-9_]*\) \([0-9]*\)$$/[\2] = "\1",/p' >$@
$(O)/kvm/seccomp.o $(O)/san/kvm/seccomp.o: $(O)/gen/syscall-names.h
$(O)/kvm/seccomp.o $(O)/san/kvm/seccomp.o: CFLAGS += -I$(O)/gen

# Unit tests link the library whole so that every device registers.
$(O)/tests/%: tests/unit/%.c $(O)/liblkvm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< -Wl,--whole-archive \
	      $(O)/liblkvm.a -Wl,--no-whole-archive $(LDLIBS)

$(O)/san/tests/%: tests/unit/%.c $(O)/san/liblkvm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -Itests/unit -o $@ $< -Wl,--whole-archive \
	      $(O)/san/liblkvm.a -Wl,--no-whole-archive $(LDLIBS)

# Helper programs used by tests and benchmarks. The boot floor is built
# twice: as a plain C program and, like lkvm, statically (bench/boot.sh).
$(O)/bench/floor-static: bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -static -o $@ $<
$(O)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)
# The KVMI guest agent, for a Linux guest (docs/kvmi.md).
$(O)/guest/kvmi-agent: guest/kvmi-agent.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -static -o $@ $<

# bench/seccomp.sh loads lkvm's own programs: the library whole, so that
# every device's rules are there.
$(O)/bench/seccomp-load: bench/seccomp-load.c $(O)/liblkvm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -Wl,--whole-archive $(O)/liblkvm.a \
	      -Wl,--no-whole-archive $(LDLIBS)

# bench/kvmi.sh's tool is an introspection tool: it links libkvmi.
$(O)/bench/kvmi-bench: bench/kvmi-bench.c $(KVMILIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(KVMILIB) $(LDLIBS)

# guest/init, PID 1 of `lkvm sandbox`: static, it runs in the guest.
all: $(O)/guest/init
$(O)/guest/init: guest/init.c guest/init-core.c guest/init.h
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) -static -o $@ guest/init.c \
	      guest/init-core.c

.PHONY: all setup run check check-linux unit bench soak clean
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

soak: setup
	@$(MAKE) --no-print-directory all
	@SOAK_SECONDS=$${SOAK_SECONDS:-300} tests/soak.sh
	@SOAK_SECONDS=$${SOAK_SECONDS:-300} SOAK_FORMAT=qcow2 tests/soak.sh

clean:
	rm -rf $(O) lkvm lkvm-slirp
	@$(MAKE) --no-print-directory -C x86-kernel clean 2>/dev/null || true

# make install: lkvm, the KVMI client library (static, with its headers
# and a pkg-config file naming this PREFIX), the test kernel, the man page
# and bash completion, under $(DESTDIR)$(PREFIX).
PREFIX  ?= /usr/local
INSTALL ?= install
BINDIR  := $(DESTDIR)$(PREFIX)/bin
LIBDIR  := $(DESTDIR)$(PREFIX)/lib
INCDIR  := $(DESTDIR)$(PREFIX)/include/kvmi
DATADIR := $(DESTDIR)$(PREFIX)/share
KVMIHDR := $(wildcard include/kvmi/*.h)

.PHONY: install uninstall
install: all
	$(INSTALL) -d $(BINDIR) $(LIBDIR)/pkgconfig $(INCDIR) \
		$(DATADIR)/lkvm $(DATADIR)/man/man1 \
		$(DATADIR)/bash-completion/completions
	$(INSTALL) -m 755 lkvm $(BINDIR)/lkvm
	$(INSTALL) -m 644 $(KVMILIB) $(LIBDIR)/libkvmi.a
	$(INSTALL) -m 644 $(KVMIHDR) $(INCDIR)/
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' \
		'includedir=$${prefix}/include' '' 'Name: lkvm-kvmi' \
		'Description: the KVMI client library of lkvm, for introspection tools' \
		'Version: $(VERSION)' 'Cflags: -I$${includedir}' \
		'Libs: -L$${libdir} -lkvmi -lnettle' \
		>$(LIBDIR)/pkgconfig/lkvm-kvmi.pc
	$(INSTALL) -m 644 $(TESTKERNEL) $(DATADIR)/lkvm/test-kernel.elf
	$(INSTALL) -m 644 docs/lkvm.1 $(DATADIR)/man/man1/lkvm.1
	$(INSTALL) -m 644 completions/lkvm.bash \
		$(DATADIR)/bash-completion/completions/lkvm

uninstall:
	rm -f $(BINDIR)/lkvm $(LIBDIR)/libkvmi.a \
	      $(LIBDIR)/pkgconfig/lkvm-kvmi.pc \
	      $(KVMIHDR:include/kvmi/%=$(INCDIR)/%) \
	      $(DATADIR)/lkvm/test-kernel.elf $(DATADIR)/man/man1/lkvm.1 \
	      $(DATADIR)/bash-completion/completions/lkvm
	-rmdir $(INCDIR) $(DATADIR)/lkvm 2>/dev/null

include fuzz/fuzz.mk

-include $(OBJ:.o=.d) $(SANOBJ:.o=.d) $(O)/main.d $(UNIT:=.d) $(SANUNIT:=.d)
