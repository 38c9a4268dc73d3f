#!/usr/bin/env bats
# virtio-9p (--9p HOSTDIR,TAG[,ro]) refereed by the test kernel's 9P2000.L
# client (x86-kernel/p9.c) on every transport: attach, create, write,
# read back, readdir, rename, remove, four requests in flight, and escape
# attempts ("..", a name with '/', symlinks to / and to "..", a file the
# host put next to the share) that must fail. The same check runs under
# QEMU's -virtfs in tests/qemu-9p.bats.

bats_require_minimum_version 1.5.0

load helpers

setup_file() {
	make -C "$KERNEL_DIR" >&2
}

setup() {
	setup_tmp
	# The share and, next to it, what the guest must not reach.
	J="$TMP/jail"
	mkdir -p "$J/share"
	echo "outside the share" >"$J/p9-outside"
}

teardown() { teardown_tmp; }

lkvm_run() {
	timeout --kill-after=5 "${LKVM_TIMEOUT:-60}" \
		"$LKVM" run -k "$KERNEL" -m 128 "$@" </dev/null
}

# The share is as the check left it (empty) and the outside untouched.
share_clean() {
	[ -z "$(ls -A "$J/share")" ] || { ls -la "$J/share"; return 1; }
	[ "$(cat "$J/p9-outside")" = "outside the share" ]
	[ "$(ls -A "$J")" = "$(printf 'p9-outside\nshare')" ]
}

@test "lkvm: virtio-9p check passes on every transport; escapes fail" {
	local t
	for t in pci pci-modern pci-legacy mmio mmio-legacy; do
		run --separate-stderr lkvm_run --virtio-transport "$t" \
			--9p "$J/share,hostshare" -p "tests=virtio-9p"
		echo "$t: $output"
		echo "$stderr" >&2
		[ "$status" -eq 0 ]
		grep -q "^ok 1 - virtio-9p: .*tag 'hostshare'.*5 escapes refused" <<<"$output"
		share_clean
	done
}

@test "lkvm: tests=all includes virtio-9p when a share is given" {
	run --separate-stderr lkvm_run --9p "$J/share,t" -p "tests=all"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q "^ok [0-9]* - virtio-9p: " <<<"$output"
	! grep -q '^not ok' <<<"$output"
	share_clean
}

@test "lkvm: a read-only share refuses the guest's create with EROFS" {
	echo keep >"$J/share/existing"
	run --separate-stderr lkvm_run --9p "$J/share,ro,ro" -p "tests=virtio-9p"
	echo "$output"
	grep -q "^not ok 1 - virtio-9p: lcreate: Rlerror 30$" <<<"$output"
	[ "$(ls -A "$J/share")" = existing ]
	[ "$(cat "$J/share/existing")" = keep ]
}

@test "lkvm: two shares are two devices with their own tags" {
	mkdir "$J/share2"
	run --separate-stderr lkvm_run --9p "$J/share,one" --9p "$J/share2,two" \
		-p "tests=virtio-9p"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q "^# virtio: 9p0 " <<<"$output"
	grep -q "^# virtio: 9p1 " <<<"$output"
}

@test "run: --9p arguments are checked with a one-line error" {
	run "$LKVM" run --9p "$J/share"
	assert_one_line_error "--9p '$J/share': use HOSTDIR,TAG\\[,ro\\]"
	run "$LKVM" run --9p "$J/none,tag"
	assert_one_line_error "--9p '$J/none': No such file or directory"
	run "$LKVM" run --9p "$J/p9-outside,tag"
	assert_one_line_error "--9p '$J/p9-outside': not a directory"
	run "$LKVM" run --9p "$J/share,tag,rx"
	assert_one_line_error "unknown flag 'rx'"
	run "$LKVM" run --9p "$J/share,$(printf 'x%.0s' $(seq 300))"
	assert_one_line_error "the tag is longer than 255 bytes"
	run "$LKVM" run --9p "$J/share,a" --9p "$J/share,a"
	assert_one_line_error "tag 'a' is used twice"
}
