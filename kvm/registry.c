// SPDX-License-Identifier: GPL-2.0
/* The guest registry: names, locks, control sockets, exit records. */
#include "lkvm/registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lkvm/util.h"

#define PATH_LEN 4200

bool registry_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > REGISTRY_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* The home directory of uid, when $HOME is unset (lkvm/util.h says why
 * /etc/passwd is read directly). */
static bool passwd_home(uid_t uid, char *buf, size_t len)
{
	char name[16];

	snprintf(name, sizeof(name), "#%u", (unsigned int)uid);
	return passwd_lookup(name, NULL, NULL, buf, len);
}

int registry_dir(char *buf, unsigned long len)
{
	const char *home = getenv("LKVM_HOME");
	struct stat st;
	int n;

	if (home && *home) {
		n = snprintf(buf, len, "%s", home);
	} else {
		const char *h = getenv("HOME");
		char pwhome[512];

		if (!h || !*h)
			h = passwd_home(getuid(), pwhome, sizeof(pwhome)) ?
				    pwhome : "/";
		n = snprintf(buf, len, "%s/.lkvm", h);
	}
	if (n < 0 || (unsigned long)n >= len)
		return -ENAMETOOLONG;
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (stat(buf, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	/* Only its owner may reach the sockets: the first line of defence,
	 * before the peer credentials the server checks. */
	if (st.st_uid == geteuid() && (st.st_mode & 077))
		chmod(buf, 0700);
	return 0;
}

static void entry_path(char *buf, const char *dir, const char *name,
		       const char *suffix)
{
	snprintf(buf, PATH_LEN, "%s/%s.%s", dir, name, suffix);
}

/*
 * A socket address for dir/NAME.sock. A path longer than sun_path is
 * reached through /proc/self/fd/DIRFD/NAME.sock, with *dirfd kept open
 * meanwhile (the caller closes it when >= 0).
 */
static int sock_addr(const char *dir, const char *name,
		     struct sockaddr_un *sa, int *dirfd)
{
	char path[PATH_LEN];

	*dirfd = -1;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	entry_path(path, dir, name, "sock");
	if (strlen(path) < sizeof(sa->sun_path)) {
		memcpy(sa->sun_path, path, strlen(path));
		return 0;
	}
	*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		return -errno;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s.sock",
		 *dirfd, name);
	return 0;
}

/* ---- the guest's own lkvm ------------------------------------------------- */

int registry_claim(const char *name, struct registry_entry *e)
{
	/* A POSIX record lock: it tells F_GETLK who holds it, so the pid
	 * need not be written (and no disk block allocated) per guest. */
	struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char path[PATH_LEN];
	int err, fd;

	e->lock_fd = -1;
	e->listening = false;
	e->sock_fd = -1;
	if (!registry_name_valid(name)) {
		pr_err("--name '%s': use 1 to %d letters, digits, '.', '_' or '-'",
		       name, REGISTRY_NAME_MAX);
		return -EINVAL;
	}
	snprintf(e->name, sizeof(e->name), "%s", name);
	err = registry_dir(e->dir, sizeof(e->dir));
	if (err) {
		pr_err("guest registry '%s': %s", e->dir, strerror(-err));
		return err;
	}
	entry_path(path, e->dir, name, "lock");
	for (;;) {
		struct stat a, b;

		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			  0600);
		if (fd < 0) {
			err = -errno;
			pr_err("guest registry '%s': %s", path,
			       strerror(errno));
			return err;
		}
		if (fcntl(fd, F_SETLK, &lk) < 0) {
			struct flock who = lk;

			if (fcntl(fd, F_GETLK, &who) < 0 || who.l_type == F_UNLCK)
				who.l_pid = 0;
			if (who.l_pid > 0)
				pr_err("a guest named '%s' is already running (pid %d)",
				       name, (int)who.l_pid);
			else
				pr_err("a guest named '%s' is already running",
				       name);
			close(fd);
			return -EEXIST;
		}
		/* The holder unlinks its file before it lets go: a lock on
		 * a file no longer at path is a lock on nothing. */
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
		    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			break;
		close(fd);
	}
	e->lock_fd = fd;
	/* Whatever a killed holder left is ours to remove now. */
	entry_path(path, e->dir, name, "sock");
	unlink(path);
	entry_path(path, e->dir, name, "exit");
	unlink(path);
	return 0;
}

int registry_listen(struct registry_entry *e)
{
	struct sockaddr_un sa;
	char path[PATH_LEN];
	int fd, dirfd, err;

	err = sock_addr(e->dir, e->name, &sa, &dirfd);
	if (err) {
		pr_err("guest registry '%s': %s", e->dir, strerror(-err));
		return err;
	}
	entry_path(path, e->dir, e->name, "sock");
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		goto fail;
	}
	/* The socket file takes the socket's mode at bind time. */
	if (fchmod(fd, 0600) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
		err = -errno;
		close(fd);
		unlink(path);
		goto fail;
	}
	if (dirfd >= 0)
		close(dirfd);
	e->listening = true;
	return fd;
fail:
	if (dirfd >= 0)
		close(dirfd);
	pr_err("control socket '%s': %s", path, strerror(-err));
	return err;
}

void registry_unlisten(struct registry_entry *e)
{
	char path[PATH_LEN];

	if (!e->listening)
		return;
	entry_path(path, e->dir, e->name, "sock");
	unlink(path);
	e->listening = false;
}

int registry_write_exit(struct registry_entry *e, int status)
{
	char path[PATH_LEN], tmp[PATH_LEN + 8], buf[32];
	int fd, n, err = 0;

	entry_path(path, e->dir, e->name, "exit");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%d\n", status);
	if (write_all(fd, buf, (size_t)n))
		err = -EIO;
	close(fd);
	/* Whole or absent: a reader never sees half a number. */
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

int registry_chown(struct registry_entry *e, uid_t uid, gid_t gid)
{
	static const char *const parts[] = { "sock", "lock" };
	char path[PATH_LEN];

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		entry_path(path, e->dir, e->name, parts[i]);
		if (lchown(path, uid, gid) < 0 && errno != ENOENT)
			return -errno;
	}
	return 0;
}

void registry_release(struct registry_entry *e)
{
	char path[PATH_LEN];

	if (e->lock_fd < 0)
		return;
	if (e->sock_fd >= 0) {	/* opened ahead, never taken */
		close(e->sock_fd);
		e->sock_fd = -1;
	}
	registry_unlisten(e);
	entry_path(path, e->dir, e->name, "lock");
	/* Unlink while holding the lock, so no other lkvm holds this file. */
	unlink(path);
	close(e->lock_fd);
	e->lock_fd = -1;
}

/* ---- clients ---------------------------------------------------------------- */

/*
 * Who holds name's lock: > 0 a pid, 0 nobody (the entry is stale and has
 * been removed, unless keep_stale), -ENOENT no lock file, -errno.
 */
static int lock_holder(const char *dir, const char *name)
{
	struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char path[PATH_LEN], sock[PATH_LEN];
	struct stat a, b;
	int fd, err;

	entry_path(path, dir, name, "lock");
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fcntl(fd, F_GETLK, &lk) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	if (lk.l_type != F_UNLCK) {
		close(fd);
		return lk.l_pid > 0 ? lk.l_pid : 1;
	}
	/* Stale: take the lock as a claimer would, then remove the entry
	 * (the socket first: a lock file without a socket is harmless). */
	lk = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_SETLK, &lk) == 0 && fstat(fd, &a) == 0 &&
	    stat(path, &b) == 0 && a.st_ino == b.st_ino &&
	    a.st_dev == b.st_dev) {
		entry_path(sock, dir, name, "sock");
		unlink(sock);
		unlink(path);
	}
	close(fd);
	return 0;
}

static int read_exit(const char *dir, const char *name, int *status,
		     bool remove)
{
	char path[PATH_LEN], buf[32];
	ssize_t n;
	int fd;

	entry_path(path, dir, name, "exit");
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	*status = atoi(buf);
	if (remove)
		unlink(path);
	return 0;
}

static int lookup_in(const char *dir, const char *name,
		     struct registry_guest *g)
{
	char path[PATH_LEN];
	int pid;

	memset(g, 0, sizeof(*g));
	snprintf(g->name, sizeof(g->name), "%s", name);
	g->state = REGISTRY_NONE;
	pid = lock_holder(dir, name);
	if (pid > 0) {
		entry_path(path, dir, name, "sock");
		g->pid = pid;
		g->state = access(path, F_OK) == 0 ? REGISTRY_RUNNING :
						     REGISTRY_BUSY;
		return 0;
	}
	if (pid < 0 && pid != -ENOENT)
		return pid;
	if (read_exit(dir, name, &g->status, false) == 0)
		g->state = REGISTRY_EXITED;
	return 0;
}

int registry_lookup(const char *name, struct registry_guest *g)
{
	char dir[4096];
	int err;

	if (!registry_name_valid(name))
		return -EINVAL;
	err = registry_dir(dir, sizeof(dir));
	return err ? err : lookup_in(dir, name, g);
}

int registry_connect(const char *name, struct registry_guest *g)
{
	struct sockaddr_un sa;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char dir[4096];
	int fd, dirfd, err;

	memset(g, 0, sizeof(*g));
	if (!registry_name_valid(name))
		return -EINVAL;
	snprintf(g->name, sizeof(g->name), "%s", name);
	err = registry_dir(dir, sizeof(dir));
	if (err)
		return err;
	err = sock_addr(dir, name, &sa, &dirfd);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
	} else if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		fd = -1;
	}
	if (dirfd >= 0)
		close(dirfd);
	if (fd >= 0) {
		g->state = REGISTRY_RUNNING;
		/* The listener's credentials, as of its listen(). */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
			g->pid = cred.pid;
			g->uid = cred.uid;
		}
		return fd;
	}
	if (err == -EACCES || err == -EPERM)
		return -EACCES;
	if (err != -ENOENT && err != -ECONNREFUSED && err != -ENOTDIR)
		return err;
	err = lookup_in(dir, name, g);
	if (err)
		return err;
	if (g->state == REGISTRY_RUNNING)
		g->state = REGISTRY_BUSY;	/* a socket that refused */
	return -ENOENT;
}

int registry_take_exit(const char *name, int *status)
{
	char dir[4096];
	int err;

	if (!registry_name_valid(name))
		return -EINVAL;
	err = registry_dir(dir, sizeof(dir));
	return err ? err : read_exit(dir, name, status, true);
}

static int cmp_guest(const void *a, const void *b)
{
	return strcmp(((const struct registry_guest *)a)->name,
		      ((const struct registry_guest *)b)->name);
}

int registry_list(struct registry_guest **out, size_t *n)
{
	struct registry_guest *v = NULL;
	size_t cap = 0, len = 0;
	char dir[4096];
	struct dirent *d;
	DIR *dp;
	int err;

	*out = NULL;
	*n = 0;
	err = registry_dir(dir, sizeof(dir));
	if (err)
		return err;
	dp = opendir(dir);
	if (!dp)
		return -errno;
	while ((d = readdir(dp))) {
		char name[REGISTRY_NAME_MAX + 1];
		const char *dot = strrchr(d->d_name, '.');
		size_t nl = dot ? (size_t)(dot - d->d_name) : 0;
		bool dup = false;

		if (!dot || (strcmp(dot, ".lock") && strcmp(dot, ".exit")) ||
		    nl == 0 || nl > REGISTRY_NAME_MAX)
			continue;
		memcpy(name, d->d_name, nl);
		name[nl] = '\0';
		if (!registry_name_valid(name))
			continue;
		for (size_t i = 0; i < len && !dup; i++)
			dup = !strcmp(v[i].name, name);
		if (dup)
			continue;
		if (len == cap) {
			struct registry_guest *nv;

			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				err = -ENOMEM;
				break;
			}
			v = nv;
		}
		if (lookup_in(dir, name, &v[len]) == 0 &&
		    v[len].state != REGISTRY_NONE)
			len++;
	}
	closedir(dp);
	if (err) {
		free(v);
		return err;
	}
	qsort(v, len, sizeof(*v), cmp_guest);
	*out = v;
	*n = len;
	return 0;
}
