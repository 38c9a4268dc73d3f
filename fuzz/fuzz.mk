# Fuzz harnesses: fuzz/fuzz-NAME.c is a libFuzzer target, built with clang
# together with the sources it exercises (FUZZ_SRC_fuzz-NAME, compiled
# with coverage and sanitizers) and linked against the rest of the library.
#
#   make fuzz              every harness for FUZZ_TIME seconds (default 60)
#   make fuzz FUZZ_TIME=5  what `make check` does, through tests/fuzz.bats
#
# Crashes and their inputs land in build/fuzz/NAME-crashes/.

FUZZCC    ?= clang
FUZZFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -Iinclude -Itests/unit \
             -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TIME ?= 60
# Only where clang is installed: the rest of the build needs gcc alone.
FUZZ      := $(if $(shell command -v $(FUZZCC) 2>/dev/null), \
               $(patsubst fuzz/%.c,$(O)/fuzz/%,$(wildcard fuzz/fuzz-*.c)))

FUZZ_SRC_fuzz-virtq := virtio/queue.c
FUZZ_SRC_fuzz-kvmi := kvm/kvmi-proto.c
FUZZ_SRC_fuzz-qcow2 := $(wildcard disk/*.c)
FUZZ_SRC_fuzz-9p := virtio/9p-proto.c virtio/9p-server.c
# fuzz-vsock includes virtio/vsock.c for its internals.
$(O)/fuzz/fuzz-vsock: virtio/vsock.c
FUZZ_LOADERS := arch/x86/boot.c arch/x86/bootparams.c arch/x86/pvh.c
FUZZ_SRC_fuzz-elf := arch/x86/elf.c $(FUZZ_LOADERS)
FUZZ_SRC_fuzz-bzimage := arch/x86/bzimage.c $(FUZZ_LOADERS)
FUZZ_SRC_fuzz-control := kvm/control.c
FUZZ_SRC_fuzz-i8254 := hw/i8254.c
FUZZ_SRC_fuzz-irqchip := hw/i8259.c hw/ioapic.c
$(O)/fuzz/fuzz-elf $(O)/fuzz/fuzz-bzimage: fuzz/loader.h \
	tests/unit/fake-machine.h
$(O)/fuzz/fuzz-control: tests/unit/fake-control.h tests/unit/fake-machine.h

.SECONDEXPANSION:
$(O)/fuzz/%: fuzz/%.c $$(FUZZ_SRC_$$*) $(O)/liblkvm.a
	@mkdir -p $(dir $@)
	$(FUZZCC) $(FUZZFLAGS) -o $@ $< $(FUZZ_SRC_$*) $(O)/liblkvm.a $(LDLIBS)

# The harnesses alone. `make check` names this target for the sub-make it
# starts after installing packages, so FUZZ is computed once clang is
# there (the parent make parsed this file before set-up ran).
.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ)

fuzz: $(FUZZ)
	@fuzz/run $(FUZZ_TIME) $(FUZZ)
