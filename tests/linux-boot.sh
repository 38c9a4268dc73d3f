#!/bin/bash
# Cross-check of the Linux boot protocol with a kernel nobody here wrote:
# Debian's cloud kernel, booted as a bzImage with an initrd and a marked
# command line. Not part of `make check`: on hosts without hardware
# virtualization the decompressor alone runs about two minutes in KVM's
# emulator (see ../shared/HOST-KVM.md). Run with `make check-linux`.
#
# What the kernel's own log must show: its version, the exact command
# line lkvm built (defaults + -p), the e820 map lkvm gave (RAM below the
# EBDA, EBDA and BIOS reserved, RAM from 1 MiB to -m), the initrd where
# lkvm put it, and KVM detected. On this host the kernel then stops at
# cmpxchg16b (KVM internal error, lkvm status 100); on a hardware host it
# goes on to look for a root file system.
set -u
cd "$(dirname "$0")/.."
dir=build/linux
mkdir -p "$dir"
if ! ls "$dir"/vmlinuz-* >/dev/null 2>&1; then
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '/Depends: linux-image-/{print $2; exit}')
	[ -n "$pkg" ] || { echo "linux-boot: no Debian cloud kernel package found"; exit 1; }
	(cd "$dir" && apt-get download "$pkg" >/dev/null 2>&1) ||
		{ echo "linux-boot: cannot download $pkg"; exit 1; }
	dpkg-deb --fsys-tarfile "$dir"/*.deb | tar -x -C "$dir" --wildcards \
		--strip-components=2 './boot/vmlinuz-*'
fi
kernel=$(ls "$dir"/vmlinuz-* | head -1)
marker="lkvm$RANDOM$RANDOM"
head -c 300000 /dev/urandom >"$dir/initrd"
out="$dir/console.log"
export LKVM_HOME=$(mktemp -d)
timeout "${LINUX_TIMEOUT:-400}" ./lkvm run -m 256 -k "$kernel" -i "$dir/initrd" \
	-p "earlyprintk=serial,ttyS0 noxsave marker=$marker" </dev/null >"$out" 2>&1
status=$?
pass=0 fail=0
check() { # description pattern
	if grep -qE -- "$2" "$out"; then
		echo "ok - $1"; pass=$((pass + 1))
	else
		echo "not ok - $1"; fail=$((fail + 1))
	fi
}
check "Linux starts and prints its version" '^\[ *0\.000000\] Linux version'
# -p sets earlyprintk=, so lkvm leaves out its own earlyprintk default.
check "the command line is lkvm's defaults then -p" \
	"Command line: console=ttyS0 reboot=k panic=-1 earlyprintk=serial,ttyS0 noxsave marker=$marker"$'\r'"?\$"
check "e820: RAM below the EBDA" 'BIOS-e820: \[mem 0x0000000000000000-0x000000000009fbff\] usable'
check "e820: EBDA reserved" 'BIOS-e820: \[mem 0x000000000009fc00-0x000000000009ffff\] reserved'
check "e820: BIOS area reserved" 'BIOS-e820: \[mem 0x00000000000f0000-0x00000000000fffff\] reserved'
check "e820: RAM from 1 MiB to 256 MiB" 'BIOS-e820: \[mem 0x0000000000100000-0x000000000fffffff\] usable'
check "setup_data is reserved by the kernel" 'reserve setup_data: \[mem 0x0000000000030000-'
# As high as it goes: the top of RAM less its size, page aligned down.
rd=$(printf '0x%08x' $(( (256 * 1024 * 1024 - 300000) & ~4095 )))
check "the initrd is found where lkvm put it" "RAMDISK: \[mem $rd-0x0fffffff\]"
check "KVM is detected" 'Hypervisor detected: KVM'
echo "# lkvm exit status $status; console log in $out"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
