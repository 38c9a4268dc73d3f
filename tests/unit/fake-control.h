/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A machine without KVM ready to serve a control socket: a private
 * $LKVM_HOME made from the mkdtemp() template home, an epoll loop, the
 * guest name, vCPU control. The caller claims the name and starts the
 * server (registry_claim(), control_start()). For test-control.c and
 * fuzz/fuzz-control.c.
 */
#ifndef LKVM_FAKE_CONTROL_H
#define LKVM_FAKE_CONTROL_H

#include <stdlib.h>
#include <sys/epoll.h>

#include "fake-machine.h"
#include "lkvm/vcpu.h"

static inline struct machine *fake_control_machine(char *home,
						   const char *name)
{
	struct machine *m;

	if (!mkdtemp(home))
		abort();
	setenv("LKVM_HOME", home, 1);
	m = fake_machine_new(16 << 20);
	m->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	m->cfg.name = name;
	machine_vcpu_ctl_init(m);
	return m;
}

#endif
