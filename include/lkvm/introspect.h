/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The introspection server's hooks for the rest of lkvm (kvm/introspect.c,
 * docs/kvmi.md).
 */
#ifndef LKVM_INTROSPECT_H
#define LKVM_INTROSPECT_H

struct machine;

/*
 * Before the guest is paused, stopped or dumped: sends the connected
 * tool KVMI_VM_EVENT_UNHOOK if it asked for it, and waits up to
 * INTROSPECT_UNHOOK_MS for it to let go (disconnect). Any thread but the
 * introspection server's; returns at once when there is no such tool.
 */
#define INTROSPECT_UNHOOK_MS 2000
void introspect_unhook(struct machine *m);

/*
 * Where `lkvm run --name NAME --introspect listen` listens and puts the
 * cookie it makes, in the registry ($LKVM_HOME): NAME.kvmi and
 * NAME.kvmi-cookie. 0 or -errno.
 */
#include <stddef.h>
int introspect_paths(const char *name, char *sock, size_t sock_len,
		     char *cookie, size_t cookie_len);

#endif
