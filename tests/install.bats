#!/usr/bin/env bats
# make install into a DESTDIR: the tree a package would hold, a working
# lkvm, and a KVMI client library that pkg-config finds and a program
# links against; make uninstall takes it all away again.

load helpers

setup() {
	setup_tmp
	cd "$BATS_TEST_DIRNAME/.."
	unset MAKEFLAGS MAKELEVEL MFLAGS
	DEST="$TMP/dest"
}

teardown() {
	teardown_tmp
}

@test "make install PREFIX=/opt/lkvm DESTDIR=...: the files, and nothing outside DESTDIR" {
	run make --no-print-directory install PREFIX=/opt/lkvm DESTDIR="$DEST"
	echo "$output"
	[ "$status" -eq 0 ]
	run bash -c "cd '$DEST' && find . -type f | sort"
	[ "$output" = "./opt/lkvm/bin/lkvm
./opt/lkvm/include/kvmi/client.h
./opt/lkvm/include/kvmi/kvmi.h
./opt/lkvm/lib/libkvmi.a
./opt/lkvm/lib/pkgconfig/lkvm-kvmi.pc
./opt/lkvm/share/bash-completion/completions/lkvm
./opt/lkvm/share/lkvm/test-kernel.elf
./opt/lkvm/share/man/man1/lkvm.1" ]
	[ -x "$DEST/opt/lkvm/bin/lkvm" ]
	# The pkg-config file names the prefix, not the staging directory.
	grep -qx 'prefix=/opt/lkvm' "$DEST/opt/lkvm/lib/pkgconfig/lkvm-kvmi.pc"
	! grep -q "$DEST" "$DEST/opt/lkvm/lib/pkgconfig/lkvm-kvmi.pc"
}

@test "the installed lkvm boots the installed test kernel; its man page and completion load" {
	make --no-print-directory install PREFIX=/usr DESTDIR="$DEST" >/dev/null
	run "$DEST/usr/bin/lkvm" version
	[ "$status" -eq 0 ]
	[ "$output" = "lkvm $(cat VERSION)" ]
	run "$DEST/usr/bin/lkvm" run -k "$DEST/usr/share/lkvm/test-kernel.elf" -p tests=serial
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"ok 1 - serial"* ]]
	run env MANWIDTH=80 man -l "$DEST/usr/share/man/man1/lkvm.1"
	[ "$status" -eq 0 ]
	[[ "$output" == *"lkvm - a small virtual machine monitor"* ]]
	run bash -c "source '$DEST/usr/share/bash-completion/completions/lkvm' && complete -p lkvm"
	[[ "$output" == *"complete -F _lkvm lkvm"* ]]
}

@test "pkg-config finds lkvm-kvmi in DESTDIR; a client program compiles, links and runs" {
	make --no-print-directory install PREFIX=/usr/local DESTDIR="$DEST" >/dev/null
	export PKG_CONFIG_PATH="$DEST/usr/local/lib/pkgconfig"
	export PKG_CONFIG_SYSROOT_DIR="$DEST"
	run pkg-config --cflags --libs lkvm-kvmi
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"-I$DEST/usr/local/include"* ]]
	[[ "$output" == *"-L$DEST/usr/local/lib"*"-lkvmi"* ]]
	[ "$(pkg-config --modversion lkvm-kvmi)" = "$(cat VERSION)" ]
	cat >"$TMP/tool.c" <<-'C'
	#include <kvmi/client.h>
	#include <stdio.h>

	int main(int argc, char **argv)
	{
		struct kvmi_conn *c;
		int r = kvmi_connect(argv[1], argv[2], 100, &c);

		printf("kvmi_connect: %d\n", r);
		return argc == 3 && r < 0 ? 0 : 1;
	}
	C
	# Built outside the source tree: only the installed header and library.
	(cd "$TMP" && gcc -Wall -Werror -o tool tool.c $(pkg-config --cflags --libs lkvm-kvmi))
	run "$TMP/tool" "$TMP/no-such.sock" "$TMP/no-cookie"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == "kvmi_connect: -"[0-9]* ]]
}

@test "make uninstall removes every installed file" {
	make --no-print-directory install PREFIX=/usr DESTDIR="$DEST" >/dev/null
	run make --no-print-directory uninstall PREFIX=/usr DESTDIR="$DEST"
	[ "$status" -eq 0 ]
	run find "$DEST" -type f
	[ -z "$output" ]
}
