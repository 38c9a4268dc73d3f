/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The registry of running guests: one entry per name under $LKVM_HOME
 * (default ~/.lkvm, mode 0700). An entry is
 *
 *   NAME.lock  a POSIX record lock held for the life of the lkvm process,
 *              so a name is never used twice and a killed lkvm never
 *              leaves a name taken (F_GETLK names the holder's pid);
 *   NAME.sock  its control socket (mode 0600), bound by the holder of the
 *              lock. A socket whose lock nobody holds is stale: it is
 *              removed by the next claim of the name, or by a client that
 *              finds it (which takes the lock to do so);
 *   NAME.exit  the exit status of a detached guest that ended on its own,
 *              kept until `lkvm wait` collects it or the name is claimed
 *              again.
 *
 * A process must never open another fd on its own NAME.lock: closing any
 * fd of a file drops the process's record locks on it. So the lkvm that
 * runs a guest uses only the first group of functions, clients only the
 * second.
 */
#ifndef LKVM_REGISTRY_H
#define LKVM_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define REGISTRY_NAME_MAX 64

struct registry_entry {
	char name[REGISTRY_NAME_MAX + 1];
	char dir[4096];
	int lock_fd;
	bool listening;
	/* registry_listen()'s socket when it was opened ahead of
	 * control_start(), which takes it (-1 otherwise). */
	int sock_fd;
};

/* A guest name: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool registry_name_valid(const char *name);
/* $LKVM_HOME, or ~/.lkvm; created 0700 when missing, made 0700 when it
 * is ours and open to others. */
int registry_dir(char *buf, unsigned long len);

/* ---- the guest's own lkvm ---------------------------------------------- */

/* Claims name (removing a stale socket and exit record); prints why on
 * failure. */
int registry_claim(const char *name, struct registry_entry *e);
/* Binds and listens on NAME.sock, mode 0600, non-blocking; returns the
 * fd or -errno (after printing why). */
int registry_listen(struct registry_entry *e);
/* Removes NAME.sock: no new client can connect. */
void registry_unlisten(struct registry_entry *e);
/* Hands NAME.sock and NAME.lock to uid:gid (--user): its clients reach
 * the socket, and it removes the entry at the end. */
int registry_chown(struct registry_entry *e, uid_t uid, gid_t gid);
/* Records a detached guest's exit status for `lkvm wait`. */
int registry_write_exit(struct registry_entry *e, int status);
/* Removes the socket and the lock file, then lets go of the name. */
void registry_release(struct registry_entry *e);

/* ---- clients -------------------------------------------------------------- */

enum registry_state {
	REGISTRY_NONE,		/* no such guest */
	REGISTRY_RUNNING,	/* its socket answers */
	REGISTRY_BUSY,		/* the name is held, the socket does not
				 * answer: starting or ending */
	REGISTRY_EXITED,	/* ended, its status kept in NAME.exit */
};

struct registry_guest {
	char name[REGISTRY_NAME_MAX + 1];
	enum registry_state state;
	pid_t pid;		/* RUNNING, BUSY */
	uid_t uid;		/* RUNNING: the owner of its lkvm */
	int status;		/* EXITED */
};

/*
 * Connects to name's control socket. Returns the connected fd (with
 * g->state RUNNING), or -ENOENT (g says why: NONE, BUSY or EXITED),
 * -EACCES, -EINVAL for a bad name, or another -errno. Stale entries
 * found on the way are removed.
 */
int registry_connect(const char *name, struct registry_guest *g);
/* The state of name without connecting (RUNNING means the lock is held
 * and the socket exists). */
int registry_lookup(const char *name, struct registry_guest *g);
/* Every entry, sorted by name, stale ones removed; *out is malloc'd. */
int registry_list(struct registry_guest **out, size_t *n);
/* Reads and removes NAME.exit: 0 with *status, or -ENOENT. */
int registry_take_exit(const char *name, int *status);

#endif
