/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A real machine (KVM, vCPU threads, the main loop on a thread of its
 * own) running a flat real-mode binary at 0x1000:0 (linear 0x10000), for
 * the unit tests of the vCPU-control and guest-debug layers.
 */
#ifndef LKVM_FLAT_GUEST_H
#define LKVM_FLAT_GUEST_H

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "lkvm/machine.h"

static struct machine m;
static int run_status = -1;

/* Waits (bounded, 5 s) until cond holds. */
#define WAIT_UNTIL(cond)                                                  \
	do {                                                              \
		for (int i_ = 0; i_ < 5000 && !(cond); i_++)              \
			usleep(1000);                                     \
	} while (0)

static void *flat_guest_runner(void *arg)
{
	(void)arg;
	run_status = machine_run(&m, NULL, NULL);
	return NULL;
}

/* Sets m up with code as its kernel (aborts on failure). */
static inline void flat_guest_init(const void *code, size_t len,
				   unsigned int ncpus, const char *name)
{
	char path[] = "/tmp/lkvm-unit-flat.XXXXXX";
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, code, len) != (ssize_t)len)
		abort();
	close(fd);
	m.cfg.kernel = path;
	m.cfg.ram_size = 16 << 20;
	m.cfg.ncpus = ncpus;
	m.cfg.detach = true;	/* no terminal */
	m.cfg.name = name;
	if (machine_setup_config(&m) || machine_init(&m))
		abort();
	unlink(path);
}

/* Runs m on a new thread (*t, to join after machine_stop()). */
static inline void flat_guest_start(pthread_t *t)
{
	if (pthread_create(t, NULL, flat_guest_runner, NULL))
		abort();
}

#endif
