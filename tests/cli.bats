#!/usr/bin/env bats
# The command line: commands, options and every kind of bad input.

load helpers

setup() { setup_tmp; }
teardown() { teardown_tmp; }

@test "no command: usage on stderr, status 1" {
	run "$LKVM"
	[ "$status" -eq 1 ]
	[[ "$output" == *"usage: lkvm COMMAND"* ]]
}

@test "unknown command: named, usage, status 1" {
	run "$LKVM" frobnicate
	[ "$status" -eq 1 ]
	[ "${lines[0]}" = "lkvm: unknown command 'frobnicate'" ]
	[[ "$output" == *"usage: lkvm COMMAND"* ]]
}

@test "help lists the commands; help run lists run's options" {
	run "$LKVM" help
	[ "$status" -eq 0 ]
	[[ "$output" == *"run "*"boot a guest"* ]]
	[[ "$output" == *"version"* ]]
	run "$LKVM" help run
	[ "$status" -eq 0 ]
	for opt in --kernel --initrd --params --mem --cpus --name --console \
		--firmware --disk --network --rng --balloon --9p \
		--debug-console --dump-dtb; do
		[[ "$output" == *"$opt"* ]] || { echo "help lacks $opt"; false; }
	done
	run "$LKVM" run --help
	[ "$status" -eq 0 ]
	[[ "$output" == *"usage: lkvm run"* ]]
}

@test "help for an unknown command fails" {
	run "$LKVM" help frobnicate
	[ "$status" -eq 1 ]
	[ "${lines[0]}" = "lkvm help: unknown command 'frobnicate'" ]
}

@test "version prints the VERSION file's version" {
	run "$LKVM" version
	[ "$status" -eq 0 ]
	[ "$output" = "lkvm $(cat "$BATS_TEST_DIRNAME/../VERSION")" ]
}

@test "run: unknown options are named, with usage, status 1" {
	run "$LKVM" run --frobnicate
	[ "$status" -eq 1 ]
	[ "${lines[0]}" = "lkvm run: unknown option '--frobnicate'" ]
	[[ "${lines[1]}" == usage:* ]]
	run "$LKVM" run -Z
	[ "$status" -eq 1 ]
	[ "${lines[0]}" = "lkvm run: unknown option '-Z'" ]
}

@test "run: a stray argument is refused" {
	run "$LKVM" run stray
	[ "$status" -eq 1 ]
	[ "${lines[0]}" = "lkvm run: unexpected argument 'stray'" ]
}

@test "run: an option without its argument" {
	run "$LKVM" run -k
	[ "$status" -eq 1 ]
	[[ "${lines[0]}" == *"--kernel needs an argument"* ]]
}

@test "run: -m 0, -m garbage and -m beyond the host are refused" {
	run "$LKVM" run -m 0
	[ "$status" -eq 1 ]
	[[ "${lines[0]}" == *"--mem: 0 is out of range"* ]]
	run "$LKVM" run -m lots
	[ "$status" -eq 1 ]
	[[ "${lines[0]}" == *"'lots' is not a size"* ]]
	run "$LKVM" run -m 60T
	assert_one_line_error "more than the host's memory"
}

@test "run: -c 0, -c garbage and -c above the KVM limit are refused" {
	run "$LKVM" run -c 0
	[ "$status" -eq 1 ]
	[[ "${lines[0]}" == *"--cpus: '0' is not a number from 1"* ]]
	run "$LKVM" run -c two
	[ "$status" -eq 1 ]
	run "$LKVM" run -c 4000
	assert_one_line_error "-c 4000: at most [0-9]+ vCPUs"
}

@test "run: a bad guest name is refused" {
	run "$LKVM" run --name '../x'
	assert_one_line_error "--name '../x'"
}

@test "run: --console accepts serial or virtio only" {
	run "$LKVM" run --console tty
	assert_one_line_error "--console 'tty': use serial or virtio"
}

@test "run: --irqchip accepts split or kernel only" {
	run "$LKVM" run --irqchip user
	assert_one_line_error "--irqchip 'user': use split or kernel"
}

@test "run: --kernel and --firmware together are refused" {
	run "$LKVM" run -k /bin/true --firmware /bin/true
	assert_one_line_error "cannot be used together"
}

@test "run: a missing kernel, initrd or firmware is named" {
	run "$LKVM" run -k "$TMP/nope"
	assert_one_line_error "'$TMP/nope'.*No such file"
	run "$LKVM" run -i "$TMP/nope"
	assert_one_line_error "'$TMP/nope'.*No such file"
	run "$LKVM" run --firmware "$TMP/nope"
	assert_one_line_error "'$TMP/nope'.*No such file"
}

@test "run: a directory as kernel, initrd or firmware is refused" {
	for o in -k -i --firmware; do
		run "$LKVM" run $o "$TMP"
		assert_one_line_error "'$TMP'"
	done
}

@test "run: an unreadable kernel, initrd or firmware is named" {
	id nobody >/dev/null 2>&1 || skip "no user 'nobody'"
	[ "$(id -u)" -eq 0 ] || skip "needs root to switch users"
	cp "$LKVM" "$TMP/lkvm" && chmod 755 "$TMP" "$TMP/lkvm"
	mkdir "$TMP/nh" && chmod 777 "$TMP/nh"
	echo x >"$TMP/secret" && chmod 600 "$TMP/secret"
	for o in -k -i --firmware; do
		LKVM_HOME="$TMP/nh/home" run setpriv --reuid=nobody \
			--regid=nogroup --clear-groups "$TMP/lkvm" run $o "$TMP/secret"
		assert_one_line_error "'$TMP/secret': Permission denied"
	done
}

@test "run: an empty kernel, initrd or firmware is refused" {
	: >"$TMP/empty"
	for o in -k -i --firmware; do
		run "$LKVM" run $o "$TMP/empty"
		assert_one_line_error "'$TMP/empty'.*empty"
	done
}

@test "run: a truncated ELF kernel is refused" {
	head -c 100 "$BATS_TEST_DIRNAME/../x86-kernel/test-kernel.elf" >"$TMP/k"
	run "$LKVM" run -k "$TMP/k"
	assert_one_line_error "kernel '$TMP/k'"
	head -c 2000 "$BATS_TEST_DIRNAME/../x86-kernel/test-kernel.elf" >"$TMP/k"
	run "$LKVM" run -k "$TMP/k"
	assert_one_line_error "kernel '$TMP/k'"
}

@test "run: an ELF kernel with a damaged header is refused" {
	cp "$BATS_TEST_DIRNAME/../x86-kernel/test-kernel.elf" "$TMP/k"
	# e_machine = 0x28 (ARM)
	printf '\x28' | dd of="$TMP/k" bs=1 seek=18 conv=notrunc status=none
	run "$LKVM" run -k "$TMP/k"
	assert_one_line_error "kernel '$TMP/k'"
	cp "$BATS_TEST_DIRNAME/../x86-kernel/test-kernel.elf" "$TMP/k"
	# e_phoff far beyond the file
	printf '\xff\xff\xff\x7f' | dd of="$TMP/k" bs=1 seek=32 conv=notrunc status=none
	run "$LKVM" run -k "$TMP/k"
	assert_one_line_error "kernel '$TMP/k'"
}

# A bzImage-shaped file: boot sector with the setup header.
make_bzimage() { # file version(hex, little-endian 2 bytes) setup_sects
	head -c $((512 * ($3 + 1) + 4096)) /dev/zero >"$1"
	printf "\\x$3" | dd of="$1" bs=1 seek=$((0x1f1)) conv=notrunc status=none
	printf '\x55\xaa' | dd of="$1" bs=1 seek=$((0x1fe)) conv=notrunc status=none
	printf 'HdrS' | dd of="$1" bs=1 seek=$((0x202)) conv=notrunc status=none
	printf "$2" | dd of="$1" bs=1 seek=$((0x206)) conv=notrunc status=none
	# syssize: 4096 bytes in 16-byte units
	printf '\x00\x01\x00\x00' | dd of="$1" bs=1 seek=$((0x1f4)) conv=notrunc status=none
}

@test "run: a bzImage with a damaged header is refused" {
	make_bzimage "$TMP/bz" '\x00\x02' 4	# protocol 2.00: too old
	run "$LKVM" run -k "$TMP/bz"
	assert_one_line_error "kernel '$TMP/bz'"
	make_bzimage "$TMP/bz" '\x0f\x02' 4	# 2.15 but no 64-bit entry
	run "$LKVM" run -k "$TMP/bz"
	assert_one_line_error "kernel '$TMP/bz'"
	make_bzimage "$TMP/bz" '\x0f\x02' 4
	head -c 1500 "$TMP/bz" >"$TMP/bz2"	# truncated in the setup code
	run "$LKVM" run -k "$TMP/bz2"
	assert_one_line_error "kernel '$TMP/bz2'"
}

@test "run: a firmware image of a bad size is refused" {
	head -c 1000 /dev/zero >"$TMP/fw"
	run "$LKVM" run --firmware "$TMP/fw"
	assert_one_line_error "firmware '$TMP/fw'"
}

@test "run: an initrd with a flat binary is refused" {
	flat_exit "$TMP/flat" "x" 00
	echo data >"$TMP/initrd"
	run "$LKVM" run -k "$TMP/flat" -i "$TMP/initrd"
	assert_one_line_error "initrd"
}

@test "run: a flat binary too large for real mode is refused" {
	head -c $((700 * 1024)) /dev/zero >"$TMP/big"
	run "$LKVM" run -k "$TMP/big"
	assert_one_line_error "'$TMP/big'"
}

@test "run: a missing /dev/kvm and a file that is not KVM get their own messages" {
	LKVM_KVM_DEVICE="$TMP/nokvm" run "$LKVM" run
	assert_one_line_error "$TMP/nokvm: no such device"
	: >"$TMP/notkvm"
	LKVM_KVM_DEVICE="$TMP/notkvm" run "$LKVM" run
	assert_one_line_error "not a KVM device"
}

@test "run: /dev/kvm without permission gets its own message" {
	id nobody >/dev/null 2>&1 || skip "no user 'nobody'"
	[ "$(id -u)" -eq 0 ] || skip "needs root to switch users"
	cp "$LKVM" "$TMP/lkvm" && chmod 755 "$TMP" "$TMP/lkvm"
	mkdir "$TMP/nh" && chmod 777 "$TMP/nh"
	LKVM_HOME="$TMP/nh/home" run setpriv --reuid=nobody --regid=nogroup \
		--clear-groups "$TMP/lkvm" run
	assert_one_line_error "/dev/kvm: permission denied"
}
