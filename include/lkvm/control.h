/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The control protocol (docs/control.md) between a running lkvm and the
 * commands that steer it (list, pause, resume, stop, stat, debug,
 * console, wait): its messages, the server in the guest's lkvm
 * (kvm/control.c) and the client the commands use (kvm/control-client.c).
 *
 * Every message, both ways, is a struct ctl_hdr and `size` bytes of body,
 * in host byte order. A reply echoes the request's op and seq and starts
 * with struct ctl_reply. The header's layout never changes between
 * versions, so any client can read a refusal of its version.
 */
#ifndef LKVM_CONTROL_H
#define LKVM_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "lkvm/registry.h"

#define CTL_MAGIC 0x434d564cu		/* "LVMC" in memory */
#define CTL_VERSION 1
#define CTL_MAX_REQUEST 4096		/* body bytes; more closes the client */
#define CTL_MEM_MAX 65536		/* bytes one CTL_MEM reads */
#define CTL_MAX_REPLY (4u << 20)	/* body bytes a client accepts */

struct ctl_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t op;
	uint32_t seq;		/* the client's; echoed in the reply */
	uint32_t size;		/* body bytes that follow */
};

struct ctl_reply {
	int32_t error;		/* 0, or -errno */
	uint32_t reserved;	/* 0 */
	/* then: on error a one-line message, else the op's reply body */
};

enum ctl_op {
	CTL_INFO = 1,		/* -> text: key value lines */
	CTL_PAUSE = 2,		/* -> nothing */
	CTL_RESUME = 3,		/* -> nothing */
	CTL_STOP = 4,		/* -> text "status N", once stopped */
	CTL_STAT = 5,		/* -> text: key value lines */
	CTL_REGS = 6,		/* ctl_cpu_req -> text */
	CTL_MEM = 7,		/* ctl_mem_req -> the bytes */
	CTL_TRANSLATE = 8,	/* ctl_translate_req -> text */
	CTL_STACK = 9,		/* ctl_cpu_req -> text */
	CTL_NMI = 10,		/* ctl_cpu_req -> nothing */
	CTL_SYSRQ = 11,		/* ctl_sysrq_req -> nothing */
	CTL_DUMP = 12,		/* ctl_dump_req + an fd (SCM_RIGHTS) -> text */
	CTL_CONSOLE = 13,	/* -> nothing; then a raw byte stream */
	CTL_WAIT = 14,		/* -> text "status N", once the guest ends */
	CTL_BALLOON = 15,	/* ctl_balloon_req -> text: key value lines */
	CTL_OP_MAX
};

#define CTL_ALL_CPUS 0xffffffffu

struct ctl_cpu_req {
	uint32_t cpu;		/* CTL_ALL_CPUS: every vCPU (CTL_REGS) */
	uint32_t reserved;
};

struct ctl_mem_req {
	uint64_t gpa;
	uint32_t len;		/* 1..CTL_MEM_MAX */
	uint32_t reserved;
};

struct ctl_translate_req {
	uint64_t gva;
	uint32_t cpu;
	uint32_t reserved;
};

struct ctl_sysrq_req {
	uint8_t ch;
	uint8_t reserved[7];
};

struct ctl_balloon_req {
	uint32_t cmd;		/* enum balloon_cmd (lkvm/balloon.h) */
	uint32_t reserved;
	uint64_t bytes;		/* for inflate and deflate: 4 KiB pages */
};

struct ctl_dump_req {
	uint32_t flags;		/* 0 */
	uint32_t reserved;
};

/* ---- the server (kvm/control.c), in `lkvm run` ---------------------------- */

struct machine;

/*
 * Listens on the entry's socket and serves it from the main loop.
 * notify_fd >= 0 (--detach): once the guest runs, its name and a newline
 * are written there and it is closed, after stdin, stdout and stderr
 * have been pointed away from the parent's.
 */
int control_start(struct machine *m, struct registry_entry *reg,
		  int notify_fd);
/* Called by machine_run() once the vCPUs run. */
void control_running(struct machine *m);
/* After machine_run(): no new clients, the socket is removed. */
void control_close(struct machine *m);
/* After machine_exit() (devices flushed): answers STOP and WAIT with the
 * status, records it for a detached guest, closes every client. */
void control_finish(struct machine *m, int status);

/* ---- the client (kvm/control-client.c), in the commands ------------------ */

struct ctl_conn {
	int fd;
	uint32_t seq;
	char name[REGISTRY_NAME_MAX + 1];
	pid_t pid;		/* the guest's lkvm */
};

struct ctl_result {
	int error;		/* the reply's, 0 or -errno */
	char *body;		/* malloc'd, NUL-terminated (also binary) */
	size_t len;
};

/*
 * Connects to a guest; on failure prints one line naming the guest and
 * the problem ("lkvm: no guest named 'foo'") and returns -errno.
 */
int ctl_open(const char *name, struct ctl_conn *c);
void ctl_close(struct ctl_conn *c);
/* Sends a request (and fd when >= 0). */
int ctl_send(struct ctl_conn *c, uint16_t op, const void *body, size_t len,
	     int fd);
/*
 * Reads the next reply within timeout_ms (-1: no limit). Returns 0 (see
 * r->error), -ETIMEDOUT, -ECONNRESET when the guest closed the
 * connection, -EPROTO for a malformed reply.
 */
int ctl_recv(struct ctl_conn *c, struct ctl_result *r, int timeout_ms);
/* ctl_send + ctl_recv; prints "lkvm: guest 'NAME': MESSAGE" for a failed
 * request or a lost connection and returns -errno. */
int ctl_call(struct ctl_conn *c, uint16_t op, const void *body, size_t len,
	     struct ctl_result *r);
void ctl_result_free(struct ctl_result *r);
/* Value of key in a "key value" text body, or NULL (a static copy). */
const char *ctl_kv(const char *body, const char *key, char *buf,
		   size_t len);

/*
 * The names a command acts on: NAME, or every running guest with --all.
 * Returns a malloc'd array of n names (free with free()), or NULL after
 * printing why.
 */
char **ctl_all_names(size_t *n);
/*
 * The guests a command taking "NAME | --all" acts on (cmd names it in
 * messages): a malloc'd array, or NULL after printing why.
 */
char **ctl_targets(const char *cmd, const char *name, bool all, size_t *n);
void ctl_free_names(char **names, size_t n);
/* Whether argv asks for help (-h or --help before any "--"). */
bool ctl_wants_help(int argc, char **argv);
/* Parses a number: decimal, 0x hex; false (after printing) otherwise. */
bool ctl_number(const char *cmd, const char *what, const char *s,
		uint64_t *out);
/*
 * A request without a body to "NAME | --all" (pause, resume): 0 when
 * every guest answered yes, 1 otherwise (each failure printed).
 */
int ctl_each(const char *cmd, int argc, char **argv, uint16_t op);
/* A JSON string literal of s on f. */
void ctl_json_string(FILE *f, const char *s);

/*
 * The argument parsing the control commands share: options (g, ng) and
 * positionals in any order. Up to maxpos positionals go to pos[]; more,
 * or an unknown option, print an error and "see 'lkvm help CMD'".
 * Returns the number of positionals or -1.
 */
struct option_group;
int ctl_parse_args(const char *cmd, int argc, char **argv,
		   const struct option_group *g, unsigned int ng,
		   char **pos, int maxpos);

#endif
