/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The registry of running guests: one entry per name under $LKVM_HOME
 * (default ~/.lkvm, mode 0700). An entry is held by a POSIX record lock on
 * NAME.lock for the life of the lkvm process, so a name is never used
 * twice and a crashed lkvm never leaves a name taken.
 */
#ifndef LKVM_REGISTRY_H
#define LKVM_REGISTRY_H

#include <stdbool.h>

#define REGISTRY_NAME_MAX 64

struct registry_entry {
	char name[REGISTRY_NAME_MAX + 1];
	char dir[4096];
	int lock_fd;
};

/* A guest name: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool registry_name_valid(const char *name);
/* $LKVM_HOME, or ~/.lkvm; created 0700 when missing. */
int registry_dir(char *buf, unsigned long len);
/* Claims name; prints why on failure. */
int registry_claim(const char *name, struct registry_entry *e);
void registry_release(struct registry_entry *e);

#endif
