// SPDX-License-Identifier: GPL-2.0
#include "lkvm/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lkvm/util.h"

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

int registry_dir(char *buf, unsigned long len)
{
	const char *home = getenv("LKVM_HOME");
	struct stat st;
	int n;

	if (home && *home) {
		n = snprintf(buf, len, "%s", home);
	} else {
		const char *h = getenv("HOME");
		struct passwd *pw;

		if (!h || !*h) {
			pw = getpwuid(getuid());
			h = pw ? pw->pw_dir : "/";
		}
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
	return 0;
}

int registry_claim(const char *name, struct registry_entry *e)
{
	/* A POSIX record lock: it tells F_GETLK who holds it, so the pid
	 * need not be written (and no disk block allocated) per guest. */
	struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char path[4200];
	int err, fd;

	e->lock_fd = -1;
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
	snprintf(path, sizeof(path), "%s/%s.lock", e->dir, name);
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
	return 0;
}

void registry_release(struct registry_entry *e)
{
	char path[4200];

	if (e->lock_fd < 0)
		return;
	snprintf(path, sizeof(path), "%s/%s.lock", e->dir, e->name);
	/* Unlink while holding the lock, so no other lkvm holds this file. */
	unlink(path);
	close(e->lock_fd);
	e->lock_fd = -1;
}
