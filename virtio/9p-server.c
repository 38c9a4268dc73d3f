// SPDX-License-Identifier: GPL-2.0
/*
 * The 9P2000.L file server behind virtio-9p: serves one host directory,
 * the share, to a guest that must never reach anything outside it.
 *
 * The jail. A fid holds an O_PATH descriptor of its file, never only a
 * name, so a directory renamed or swapped for a symlink after a walk
 * does not change what the fid means. Walking one name opens it beneath
 * the fid's directory with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
 * and O_NOFOLLOW: a symlink is walked to as itself (the guest's kernel
 * reads and follows it within the guest's view), never followed on the
 * host. Names with '/' and "." are refused; ".." is lexical: the fid
 * remembers its path from the root, and its parent is resolved again
 * beneath the root (at the root, ".." is the root, as in Plan 9). Where
 * the kernel lacks openat2(), the same walk is done one component at a
 * time with openat(O_NOFOLLOW), which never crosses a symlink either.
 * Every operation that names a file is an *at() call on a fid's
 * descriptor with one checked name. Device nodes are neither created
 * nor opened (the guest must not reach the host's devices), and a
 * read-only share refuses every change with EROFS.
 *
 * Threads. p9_handle() may run in several threads: the fid table and
 * the tags in flight are under s->lock; a fid is reference-counted, and
 * a fid that changes (walk onto itself, lcreate) is replaced in the
 * table rather than changed, so a request using the old one finishes
 * with it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "lkvm/9p.h"
#include "lkvm/util.h"
#include "lkvm/virtio_queue.h"

#define FID_BUCKETS 256
#define MAX_FIDS 4096		/* each may hold two descriptors */
#define XATTR_MAX (64 * 1024)

struct fid {
	struct fid *next;	/* hash chain; s->lock */
	uint32_t id;
	unsigned int refs;	/* s->lock */
	int pfd;		/* O_PATH of the file itself */
	int ofd;		/* after lopen/lcreate, or -1 */
	mode_t type;		/* S_IFMT bits */
	char *path;		/* from the root, "" for the root; s->lock */
	pthread_mutex_t dir_lock; /* readdir's lseek + getdents */
	bool xattr;		/* from xattrwalk: xdata is its content */
	uint8_t *xdata;
	uint32_t xlen;
};

struct p9_server {
	int rootfd;
	bool ro;
	bool no_openat2;
	dev_t rootdev;
	pthread_mutex_t lock;
	pthread_cond_t tag_done;
	uint32_t msize;
	unsigned int nfids;
	struct fid *fids[FID_BUCKETS];
	uint64_t tags[65536 / 64];	/* in flight */
	uint64_t flushes[65536 / 64];	/* in flight and a Tflush */
};

/* What a handler gets. */
struct req {
	struct p9_server *s;
	struct p9_in *in;
	struct p9_out *out;
	uint16_t tag;
	/* p9_handle_iov(): where the reply goes; Tread's data goes there
	 * directly, direct bytes of it after the header in out. */
	const struct iovec *iov;
	unsigned int niov;
	uint32_t direct;
	const struct p9_split *split;	/* Twrite's data in the guest's buffers */
};

/* ---- fids --------------------------------------------------------------- */

static void fid_free(struct fid *f)
{
	if (f->pfd >= 0)
		close(f->pfd);
	if (f->ofd >= 0)
		close(f->ofd);
	pthread_mutex_destroy(&f->dir_lock);
	free(f->path);
	free(f->xdata);
	free(f);
}

static struct fid *fid_new(int pfd, mode_t type, const char *path)
{
	struct fid *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->path = strdup(path);
	if (!f->path) {
		free(f);
		return NULL;
	}
	f->pfd = pfd;
	f->ofd = -1;
	f->type = type & S_IFMT;
	f->refs = 1;
	pthread_mutex_init(&f->dir_lock, NULL);
	return f;
}

static struct fid **fid_slot(struct p9_server *s, uint32_t id)
{
	struct fid **p = &s->fids[id % FID_BUCKETS];

	while (*p && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

/* The fid with this number, referenced; NULL when unknown. */
static struct fid *fid_get(struct p9_server *s, uint32_t id)
{
	struct fid *f;

	pthread_mutex_lock(&s->lock);
	f = *fid_slot(s, id);
	if (f)
		f->refs++;
	pthread_mutex_unlock(&s->lock);
	return f;
}

static void fid_put(struct p9_server *s, struct fid *f)
{
	bool last;

	if (!f)
		return;
	pthread_mutex_lock(&s->lock);
	last = --f->refs == 0;
	pthread_mutex_unlock(&s->lock);
	if (last)
		fid_free(f);
}

/*
 * Enters f as number id. With replace, an existing fid of that number
 * is replaced (walk onto itself, lcreate); without, it is EBADF. Takes
 * the caller's reference to f either way.
 */
static int fid_install(struct p9_server *s, uint32_t id, struct fid *f,
		       bool replace)
{
	struct fid **p, *old = NULL;
	int err = 0;

	if (id == P9_NOFID) {
		fid_free(f);
		return -EBADF;
	}
	pthread_mutex_lock(&s->lock);
	p = fid_slot(s, id);
	if (*p && !replace) {
		err = -EBADF;
	} else if (!*p && s->nfids >= MAX_FIDS) {
		err = -EMFILE;
	} else {
		old = *p;
		f->id = id;
		if (old) {
			f->next = old->next;
			if (--old->refs)
				old = NULL;
		} else {
			f->next = NULL;
			s->nfids++;
		}
		*p = f;
	}
	pthread_mutex_unlock(&s->lock);
	if (old)
		fid_free(old);
	if (err)
		fid_free(f);
	return err;
}

/* Takes fid id out of the table (Tclunk, Tremove). */
static int fid_clunk(struct p9_server *s, uint32_t id)
{
	struct fid **p, *f;
	bool last = false;

	pthread_mutex_lock(&s->lock);
	p = fid_slot(s, id);
	f = *p;
	if (f) {
		*p = f->next;
		s->nfids--;
		last = --f->refs == 0;
	}
	pthread_mutex_unlock(&s->lock);
	if (last)
		fid_free(f);
	return f ? 0 : -EBADF;
}

static void fid_clunk_all(struct p9_server *s)
{
	for (unsigned int b = 0; b < FID_BUCKETS; b++)
		while (s->fids[b])
			fid_clunk(s, s->fids[b]->id);
}

/* A copy of f's path (s->lock guards it: rename changes it). */
static char *fid_path(struct p9_server *s, struct fid *f)
{
	char *p;

	pthread_mutex_lock(&s->lock);
	p = strdup(f->path);
	pthread_mutex_unlock(&s->lock);
	return p;
}

/* ---- the resolver ------------------------------------------------------- */

/* A name one component long that may be created or walked to. */
static int check_name(const char *name)
{
	if (!name[0] || strchr(name, '/') || !strcmp(name, ".") ||
	    !strcmp(name, ".."))
		return -EINVAL;
	return 0;
}

static int openat2_beneath(struct p9_server *s, int dirfd, const char *path,
			   int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd;

	if (!s->no_openat2) {
		fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS)
			return -errno;
		s->no_openat2 = true;
	}
	/* Callers hand one checked component: nothing to cross. */
	if (strchr(path, '/') || !strcmp(path, ".."))
		return -EXDEV;
	fd = openat(dirfd, path, flags | O_CLOEXEC | O_NOFOLLOW, mode);
	return fd < 0 ? -errno : (int)fd;
}

/* O_PATH of rel (from the root, "" = the root), one name at a time. */
static int resolve_path(struct p9_server *s, const char *rel)
{
	char buf[PATH_MAX], *save = NULL, *name;
	int fd = openat(s->rootfd, ".", O_PATH | O_CLOEXEC | O_DIRECTORY);

	if (fd < 0)
		return -errno;
	if (strlen(rel) >= sizeof(buf)) {
		close(fd);
		return -ENAMETOOLONG;
	}
	strcpy(buf, rel);
	for (name = strtok_r(buf, "/", &save); name;
	     name = strtok_r(NULL, "/", &save)) {
		int next;

		if (check_name(name)) {
			close(fd);
			return -EINVAL;
		}
		next = openat2_beneath(s, fd, name, O_PATH, 0);
		close(fd);
		if (next < 0)
			return next;
		fd = next;
	}
	return fd;
}

static int fstat_fd(int fd, struct stat *st)
{
	return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) ?
		       -errno : 0;
}

static void make_qid(struct p9_server *s, const struct stat *st,
		     struct p9_qid *q)
{
	q->type = S_ISDIR(st->st_mode) ? P9_QTDIR :
		  S_ISLNK(st->st_mode) ? P9_QTSYMLINK : P9_QTFILE;
	q->version = (uint32_t)(st->st_mtim.tv_sec ^ st->st_mtim.tv_nsec ^
				st->st_size);
	/* Files of other file systems under the share keep distinct paths. */
	q->path = st->st_ino;
	if (st->st_dev != s->rootdev)
		q->path ^= (uint64_t)(st->st_dev * 0x9e3779b1u) << 40;
}

static void procpath(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/*
 * Opens f's file for I/O. The O_PATH descriptor is reopened (through
 * /proc/self/fd for a file, "." for a directory), so this is the very
 * file the walk found; symlinks and device nodes are not opened.
 */
static int fid_reopen(struct p9_server *s, struct fid *f, int flags)
{
	char p[64];
	int fd;

	flags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY)) | O_CLOEXEC;
	if (S_ISDIR(f->type))
		return openat2_beneath(s, f->pfd, ".", flags | O_DIRECTORY, 0);
	if (S_ISLNK(f->type))
		return -ELOOP;
	if (!S_ISREG(f->type))
		return -EACCES;
	procpath(p, sizeof(p), f->pfd);
	fd = open(p, flags & ~O_NOFOLLOW);
	return fd < 0 ? -errno : fd;
}

/* ---- handlers ------------------------------------------------------------ */

#define ARGS_OK(r)                                                         \
	do {                                                               \
		if ((r)->in->bad)                                          \
			return -EINVAL;                                    \
	} while (0)

/* The fid a request names, once its arguments parsed. */
static int req_fid(struct req *r, uint32_t id, struct fid **f)
{
	if (r->in->bad)
		return -EINVAL;
	*f = fid_get(r->s, id);
	return *f ? 0 : -EBADF;
}

static int reply_qid_at(struct req *r, int dirfd, const char *name)
{
	struct stat st;
	struct p9_qid q;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return -errno;
	make_qid(r->s, &st, &q);
	p9_putqid(r->out, &q);
	return 0;
}

static int h_version(struct req *r)
{
	struct p9_server *s = r->s;
	uint32_t msize = p9_get32(r->in);
	char version[32];

	p9_getstr(r->in, version, sizeof(version));
	ARGS_OK(r);
	if (msize < P9_MIN_MSIZE)
		return -EINVAL;
	fid_clunk_all(s);
	msize = MIN(msize, P9_MAX_MSIZE);
	if (strcmp(version, "9P2000.L")) {
		/* Any other dialect: "unknown", and no session. */
		p9_put32(r->out, msize);
		p9_putstr(r->out, "unknown");
		__atomic_store_n(&s->msize, 0, __ATOMIC_RELEASE);
		return 0;
	}
	__atomic_store_n(&s->msize, msize, __ATOMIC_RELEASE);
	p9_put32(r->out, msize);
	p9_putstr(r->out, "9P2000.L");
	return 0;
}

static int h_attach(struct req *r)
{
	char uname[256], aname[256];
	uint32_t id = p9_get32(r->in);
	struct stat st;
	struct p9_qid q;
	struct fid *f;
	int fd, err;

	p9_get32(r->in);	/* afid: no authentication */
	p9_getstr(r->in, uname, sizeof(uname));
	p9_getstr(r->in, aname, sizeof(aname));
	p9_get32(r->in);	/* n_uname */
	ARGS_OK(r);
	fd = openat(r->s->rootfd, ".", O_PATH | O_CLOEXEC | O_DIRECTORY);
	if (fd < 0)
		return -errno;
	err = fstat_fd(fd, &st);
	if (err) {
		close(fd);
		return err;
	}
	f = fid_new(fd, st.st_mode, "");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	err = fid_install(r->s, id, f, false);
	if (err)
		return err;
	make_qid(r->s, &st, &q);
	p9_putqid(r->out, &q);
	return 0;
}

static int h_auth(struct req *r)
{
	(void)r;
	return -EOPNOTSUPP;
}

static int h_flush(struct req *r)
{
	struct p9_server *s = r->s;
	uint16_t old = p9_get16(r->in);

	ARGS_OK(r);
	/*
	 * Requests are never abandoned half done: the reply to old goes
	 * out first, then Rflush. A Tflush does not wait for another
	 * Tflush (no cycle), nor for itself.
	 */
	if (old == r->tag)
		return 0;
	pthread_mutex_lock(&s->lock);
	while ((s->tags[old / 64] >> (old % 64)) & 1 &&
	       !((s->flushes[old / 64] >> (old % 64)) & 1))
		pthread_cond_wait(&s->tag_done, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Appends name to path ("" for the root). */
static int join(char *dst, size_t len, const char *path, const char *name)
{
	int n = snprintf(dst, len, "%s%s%s", path, path[0] ? "/" : "", name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Walks one step from (fd, path): the new O_PATH fd, path updated. */
static int walk_one(struct p9_server *s, int fd, char *path, size_t len,
		    const char *name)
{
	char *slash;

	if (!strcmp(name, "..")) {
		slash = strrchr(path, '/');
		if (slash)
			*slash = 0;
		else
			path[0] = 0;
		return resolve_path(s, path);
	}
	if (check_name(name))
		return -EINVAL;
	if (strlen(path) + strlen(name) + 2 > len)
		return -ENAMETOOLONG;
	fd = openat2_beneath(s, fd, name, O_PATH, 0);
	if (fd < 0)
		return fd;
	if (path[0])
		strcat(path, "/");
	strcat(path, name);
	return fd;
}

static int h_walk(struct req *r)
{
	uint32_t id = p9_get32(r->in), newid = p9_get32(r->in);
	uint16_t n = p9_get16(r->in);
	char names[P9_MAXWELEM][256];
	char path[PATH_MAX];
	struct p9_qid qids[P9_MAXWELEM];
	struct fid *f, *nf;
	unsigned int done = 0;
	struct stat st;
	mode_t type;
	int fd, err = 0;

	if (n > P9_MAXWELEM)
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++)
		p9_getstr(r->in, names[i], sizeof(names[i]));
	err = req_fid(r, id, &f);
	if (err)
		return err;
	if (f->ofd >= 0 || f->xattr) {
		fid_put(r->s, f);	/* an open fid cannot be walked */
		return -EBUSY;
	}
	if (n && !S_ISDIR(f->type)) {
		fid_put(r->s, f);
		return -ENOTDIR;
	}
	pthread_mutex_lock(&r->s->lock);
	snprintf(path, sizeof(path), "%s", f->path);
	pthread_mutex_unlock(&r->s->lock);
	fd = fcntl(f->pfd, F_DUPFD_CLOEXEC, 0);
	type = f->type;
	fid_put(r->s, f);
	if (fd < 0)
		return -errno;
	st.st_mode = type;
	for (; done < n; done++) {
		int next = -ENOTDIR;

		if (S_ISDIR(st.st_mode))
			next = walk_one(r->s, fd, path, sizeof(path),
					names[done]);
		if (next < 0) {
			err = next;
			break;
		}
		close(fd);
		fd = next;
		err = fstat_fd(fd, &st);
		if (err)
			break;
		make_qid(r->s, &st, &qids[done]);
	}
	if (done < n) {
		close(fd);
		if (!done)
			return err;
		/* A partial walk: the qids so far, no new fid. */
		p9_put16(r->out, (uint16_t)done);
		for (unsigned int i = 0; i < done; i++)
			p9_putqid(r->out, &qids[i]);
		return 0;
	}
	nf = fid_new(fd, st.st_mode, path);
	if (!nf) {
		close(fd);
		return -ENOMEM;
	}
	err = fid_install(r->s, newid, nf, newid == id);
	if (err)
		return err;
	p9_put16(r->out, n);
	for (unsigned int i = 0; i < n; i++)
		p9_putqid(r->out, &qids[i]);
	return 0;
}

static int h_clunk(struct req *r)
{
	uint32_t id = p9_get32(r->in);

	ARGS_OK(r);
	return fid_clunk(r->s, id);
}

/* Open flags a client may ask for (Linux's, which 9P2000.L uses). */
#define OPEN_OK (O_ACCMODE | O_TRUNC | O_APPEND | O_NONBLOCK | O_DSYNC |   \
		 O_DIRECTORY | O_SYNC | O_LARGEFILE | O_EXCL)

static bool wants_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* Sets f's open descriptor once. */
static int fid_set_open(struct p9_server *s, struct fid *f, int fd)
{
	int err = 0;

	pthread_mutex_lock(&s->lock);
	if (f->ofd >= 0 || f->xattr)
		err = -EBUSY;
	else
		f->ofd = fd;
	pthread_mutex_unlock(&s->lock);
	if (err)
		close(fd);
	return err;
}

static int h_lopen(struct req *r)
{
	uint32_t id = p9_get32(r->in);
	int flags = (int)(p9_get32(r->in) & OPEN_OK & ~O_EXCL);
	struct fid *f;
	struct stat st;
	struct p9_qid q;
	int fd, err;

	ARGS_OK(r);
	if (r->s->ro && wants_write(flags))
		return -EROFS;
	f = fid_get(r->s, id);
	if (!f)
		return -EBADF;
	err = fstat_fd(f->pfd, &st);
	fd = err ? err : fid_reopen(r->s, f, flags);
	if (fd >= 0)
		err = fid_set_open(r->s, f, fd);
	else
		err = fd;
	fid_put(r->s, f);
	if (err)
		return err;
	make_qid(r->s, &st, &q);
	p9_putqid(r->out, &q);
	p9_put32(r->out, 0);	/* iounit: msize decides */
	return 0;
}

static int h_lcreate(struct req *r)
{
	uint32_t id = p9_get32(r->in);
	char name[256], path[PATH_MAX];
	int flags, fd, pfd = -1, err;
	uint32_t mode;
	struct fid *f, *nf = NULL;
	struct stat st;
	struct p9_qid q;

	p9_getstr(r->in, name, sizeof(name));
	flags = (int)(p9_get32(r->in) & OPEN_OK & ~O_DIRECTORY);
	mode = p9_get32(r->in) & 07777;
	p9_get32(r->in);	/* gid: files belong to lkvm's user */
	ARGS_OK(r);
	if (r->s->ro)
		return -EROFS;
	if (check_name(name))
		return -EINVAL;
	f = fid_get(r->s, id);
	if (!f)
		return -EBADF;
	if (!S_ISDIR(f->type) || f->ofd >= 0) {
		err = S_ISDIR(f->type) ? -EBUSY : -ENOTDIR;
		fid_put(r->s, f);
		return err;
	}
	fd = openat2_beneath(r->s, f->pfd, name, flags | O_CREAT, mode);
	if (fd < 0) {
		fid_put(r->s, f);
		return fd;
	}
	pfd = openat2_beneath(r->s, f->pfd, name, O_PATH, 0);
	err = pfd < 0 ? pfd : fstat_fd(fd, &st);
	if (!err) {
		char *fp = fid_path(r->s, f);

		err = !fp ? -ENOMEM : join(path, sizeof(path), fp, name);
		free(fp);
	}
	fid_put(r->s, f);
	if (!err) {
		nf = fid_new(pfd, st.st_mode, path);
		err = nf ? 0 : -ENOMEM;
	}
	if (err) {
		close(fd);
		if (pfd >= 0)
			close(pfd);
		return err;
	}
	nf->ofd = fd;
	/* The fid now stands for the new file, open. */
	err = fid_install(r->s, id, nf, true);
	if (err)
		return err;
	make_qid(r->s, &st, &q);
	p9_putqid(r->out, &q);
	p9_put32(r->out, 0);
	return 0;
}

/* The directory fid dfid for a request that creates or removes name. */
static int dir_fid(struct req *r, uint32_t id, const char *name, bool change,
		   struct fid **out)
{
	struct fid *f;

	if (change && r->s->ro)
		return -EROFS;
	if (check_name(name))
		return -EINVAL;
	f = fid_get(r->s, id);
	if (!f)
		return -EBADF;
	if (!S_ISDIR(f->type)) {
		fid_put(r->s, f);
		return -ENOTDIR;
	}
	*out = f;
	return 0;
}

static int h_mkdir(struct req *r)
{
	uint32_t id = p9_get32(r->in), mode;
	char name[256];
	struct fid *d;
	int err;

	p9_getstr(r->in, name, sizeof(name));
	mode = p9_get32(r->in) & 07777;
	p9_get32(r->in);	/* gid */
	ARGS_OK(r);
	err = dir_fid(r, id, name, true, &d);
	if (err)
		return err;
	err = mkdirat(d->pfd, name, mode) ? -errno :
					     reply_qid_at(r, d->pfd, name);
	fid_put(r->s, d);
	return err;
}

static int h_symlink(struct req *r)
{
	uint32_t id = p9_get32(r->in);
	char name[256], target[PATH_MAX];
	struct fid *d;
	int err;

	p9_getstr(r->in, name, sizeof(name));
	p9_getstr(r->in, target, sizeof(target));
	p9_get32(r->in);	/* gid */
	ARGS_OK(r);
	err = dir_fid(r, id, name, true, &d);
	if (err)
		return err;
	/* Any target: the host never follows a symlink in the share. */
	err = symlinkat(target, d->pfd, name) ? -errno :
						 reply_qid_at(r, d->pfd, name);
	fid_put(r->s, d);
	return err;
}

static int h_mknod(struct req *r)
{
	uint32_t id = p9_get32(r->in), mode, major, minor;
	char name[256];
	struct fid *d;
	int err;

	p9_getstr(r->in, name, sizeof(name));
	mode = p9_get32(r->in);
	major = p9_get32(r->in);
	minor = p9_get32(r->in);
	p9_get32(r->in);	/* gid */
	ARGS_OK(r);
	/* FIFOs, sockets and plain files; no device nodes on the host. */
	if (!S_ISFIFO(mode) && !S_ISSOCK(mode) && !S_ISREG(mode))
		return -EPERM;
	err = dir_fid(r, id, name, true, &d);
	if (err)
		return err;
	err = mknodat(d->pfd, name, mode & (S_IFMT | 07777),
		      makedev(major, minor)) ? -errno :
					       reply_qid_at(r, d->pfd, name);
	fid_put(r->s, d);
	return err;
}

static int h_link(struct req *r)
{
	uint32_t did = p9_get32(r->in), id = p9_get32(r->in);
	char name[256], p[64];
	struct fid *d, *f;
	int err;

	p9_getstr(r->in, name, sizeof(name));
	ARGS_OK(r);
	err = dir_fid(r, did, name, true, &d);
	if (err)
		return err;
	f = fid_get(r->s, id);
	if (!f) {
		fid_put(r->s, d);
		return -EBADF;
	}
	procpath(p, sizeof(p), f->pfd);
	err = S_ISDIR(f->type) ? -EPERM :
	      linkat(AT_FDCWD, p, d->pfd, name, AT_SYMLINK_FOLLOW) ? -errno : 0;
	fid_put(r->s, f);
	fid_put(r->s, d);
	return err;
}

static int h_unlinkat(struct req *r)
{
	uint32_t id = p9_get32(r->in), flags;
	char name[256];
	struct fid *d;
	int err;

	p9_getstr(r->in, name, sizeof(name));
	flags = p9_get32(r->in);
	ARGS_OK(r);
	err = dir_fid(r, id, name, true, &d);
	if (err)
		return err;
	err = unlinkat(d->pfd, name, flags & AT_REMOVEDIR) ? -errno : 0;
	fid_put(r->s, d);
	return err;
}

static int h_renameat(struct req *r)
{
	uint32_t oid = p9_get32(r->in), nid;
	char oname[256], nname[256];
	struct fid *od, *nd;
	int err;

	p9_getstr(r->in, oname, sizeof(oname));
	nid = p9_get32(r->in);
	p9_getstr(r->in, nname, sizeof(nname));
	ARGS_OK(r);
	err = dir_fid(r, oid, oname, true, &od);
	if (err)
		return err;
	err = dir_fid(r, nid, nname, true, &nd);
	if (err) {
		fid_put(r->s, od);
		return err;
	}
	err = renameat(od->pfd, oname, nd->pfd, nname) ? -errno : 0;
	fid_put(r->s, nd);
	fid_put(r->s, od);
	return err;
}

/*
 * The directory that holds f and f's name in it, from f's path: for
 * Trename and Tremove, which name a file by its fid.
 */
static int fid_parent(struct req *r, struct fid *f, char *base, size_t len)
{
	char *path = fid_path(r->s, f), *slash;
	int fd;

	if (!path)
		return -ENOMEM;
	if (!path[0]) {
		free(path);
		return -EBUSY;		/* the root */
	}
	slash = strrchr(path, '/');
	snprintf(base, len, "%s", slash ? slash + 1 : path);
	if (slash)
		*slash = 0;
	else
		path[0] = 0;
	fd = resolve_path(r->s, path);
	free(path);
	return fd;
}

static int h_rename(struct req *r)
{
	uint32_t id = p9_get32(r->in), did = p9_get32(r->in);
	char name[256], base[256], path[PATH_MAX];
	struct fid *f, *d;
	int pfd, err;

	p9_getstr(r->in, name, sizeof(name));
	ARGS_OK(r);
	err = dir_fid(r, did, name, true, &d);
	if (err)
		return err;
	f = fid_get(r->s, id);
	if (!f) {
		fid_put(r->s, d);
		return -EBADF;
	}
	pfd = fid_parent(r, f, base, sizeof(base));
	err = pfd < 0 ? pfd : renameat(pfd, base, d->pfd, name) ? -errno : 0;
	if (pfd >= 0)
		close(pfd);
	if (!err) {
		char *dp = fid_path(r->s, d), *np;

		if (dp && !join(path, sizeof(path), dp, name) &&
		    (np = strdup(path))) {
			pthread_mutex_lock(&r->s->lock);
			free(f->path);
			f->path = np;
			pthread_mutex_unlock(&r->s->lock);
		}
		free(dp);
	}
	fid_put(r->s, f);
	fid_put(r->s, d);
	return err;
}

static int h_remove(struct req *r)
{
	uint32_t id = p9_get32(r->in);
	char base[256];
	struct fid *f;
	int pfd, err;

	err = req_fid(r, id, &f);
	if (err)
		return err;
	if (r->s->ro) {
		err = -EROFS;
	} else {
		pfd = fid_parent(r, f, base, sizeof(base));
		err = pfd < 0 ? pfd :
		      unlinkat(pfd, base, S_ISDIR(f->type) ? AT_REMOVEDIR : 0) ?
		      -errno : 0;
		if (pfd >= 0)
			close(pfd);
	}
	fid_put(r->s, f);
	/* The fid goes, whether or not the file did. */
	fid_clunk(r->s, id);
	return err;
}

static int h_getattr(struct req *r)
{
	uint32_t id = p9_get32(r->in);
	struct p9_out *o = r->out;
	struct fid *f;
	struct stat st;
	struct p9_qid q;
	int err;

	p9_get64(r->in);	/* request_mask: everything basic is cheap */
	err = req_fid(r, id, &f);
	if (err)
		return err;
	err = fstat_fd(f->pfd, &st);
	fid_put(r->s, f);
	if (err)
		return err;
	make_qid(r->s, &st, &q);
	p9_put64(o, P9_GETATTR_BASIC);
	p9_putqid(o, &q);
	p9_put32(o, st.st_mode);
	p9_put32(o, st.st_uid);
	p9_put32(o, st.st_gid);
	p9_put64(o, st.st_nlink);
	p9_put64(o, st.st_rdev);
	p9_put64(o, (uint64_t)st.st_size);
	p9_put64(o, (uint64_t)st.st_blksize);
	p9_put64(o, (uint64_t)st.st_blocks);
	p9_put64(o, (uint64_t)st.st_atim.tv_sec);
	p9_put64(o, (uint64_t)st.st_atim.tv_nsec);
	p9_put64(o, (uint64_t)st.st_mtim.tv_sec);
	p9_put64(o, (uint64_t)st.st_mtim.tv_nsec);
	p9_put64(o, (uint64_t)st.st_ctim.tv_sec);
	p9_put64(o, (uint64_t)st.st_ctim.tv_nsec);
	for (int i = 0; i < 4; i++)
		p9_put64(o, 0);	/* btime, gen, data_version */
	return 0;
}

static int h_setattr(struct req *r)
{
	uint32_t id = p9_get32(r->in), valid, mode, uid, gid;
	uint64_t size, t[4];
	struct timespec ts[2];
	struct fid *f;
	char p[64];
	int err = 0;

	valid = p9_get32(r->in);
	mode = p9_get32(r->in);
	uid = p9_get32(r->in);
	gid = p9_get32(r->in);
	size = p9_get64(r->in);
	for (int i = 0; i < 4; i++)
		t[i] = p9_get64(r->in);
	ARGS_OK(r);
	if (r->s->ro)
		return -EROFS;
	f = fid_get(r->s, id);
	if (!f)
		return -EBADF;
	procpath(p, sizeof(p), f->pfd);
	if ((valid & P9_SETATTR_MODE) && !err)
		err = S_ISLNK(f->type) ? -EOPNOTSUPP :
		      chmod(p, mode & 07777) ? -errno : 0;
	if ((valid & (P9_SETATTR_UID | P9_SETATTR_GID)) && !err)
		err = fchownat(f->pfd, "",
			       (valid & P9_SETATTR_UID) ? uid : (uid_t)-1,
			       (valid & P9_SETATTR_GID) ? gid : (gid_t)-1,
			       AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) ? -errno : 0;
	if ((valid & P9_SETATTR_SIZE) && !err) {
		if (size > INT64_MAX)
			err = -EFBIG;
		else if (!S_ISREG(f->type))
			err = S_ISDIR(f->type) ? -EISDIR : -EINVAL;
		else
			err = truncate(p, (off_t)size) ? -errno : 0;
	}
	if ((valid & (P9_SETATTR_ATIME | P9_SETATTR_MTIME)) && !err &&
	    !S_ISLNK(f->type)) {
		ts[0].tv_sec = (time_t)t[0];
		ts[0].tv_nsec = !(valid & P9_SETATTR_ATIME) ? UTIME_OMIT :
				(valid & P9_SETATTR_ATIME_SET) ?
				(long)(t[1] % 1000000000) : UTIME_NOW;
		ts[1].tv_sec = (time_t)t[2];
		ts[1].tv_nsec = !(valid & P9_SETATTR_MTIME) ? UTIME_OMIT :
				(valid & P9_SETATTR_MTIME_SET) ?
				(long)(t[3] % 1000000000) : UTIME_NOW;
		err = utimensat(AT_FDCWD, p, ts, 0) ? -errno : 0;
	}
	fid_put(r->s, f);
	return err;
}

static int h_readlink(struct req *r)
{
	uint32_t id = p9_get32(r->in);
	char target[PATH_MAX];
	struct fid *f;
	ssize_t n;
	int err;

	err = req_fid(r, id, &f);
	if (err)
		return err;
	n = S_ISLNK(f->type) ?
		    readlinkat(f->pfd, "", target, sizeof(target) - 1) :
		    (errno = EINVAL, -1);
	fid_put(r->s, f);
	if (n < 0)
		return -errno;
	target[n] = 0;
	p9_putstr(r->out, target);
	return 0;
}

static int h_statfs(struct req *r)
{
	uint32_t id = p9_get32(r->in);
	struct p9_out *o = r->out;
	struct statfs sf;
	struct fid *f;
	int err;

	err = req_fid(r, id, &f);
	if (err)
		return err;
	err = fstatfs(f->pfd, &sf) ? -errno : 0;
	fid_put(r->s, f);
	if (err)
		return err;
	p9_put32(o, (uint32_t)sf.f_type);
	p9_put32(o, (uint32_t)sf.f_bsize);
	p9_put64(o, sf.f_blocks);
	p9_put64(o, sf.f_bfree);
	p9_put64(o, sf.f_bavail);
	p9_put64(o, sf.f_files);
	p9_put64(o, sf.f_ffree);
	p9_put64(o, (uint64_t)(uint32_t)sf.f_fsid.__val[0] |
			    (uint64_t)(uint32_t)sf.f_fsid.__val[1] << 32);
	p9_put32(o, (uint32_t)sf.f_namelen);
	return 0;
}

/* The largest payload a reply may carry after hdr bytes of header. */
static uint32_t room(struct req *r, uint32_t hdr)
{
	uint32_t cap = r->out->cap;

	return cap > hdr ? cap - hdr : 0;
}

/* Reads straight into the reply's buffers, after its 11-byte header.
 * (The slice lives on the stack: as a thread-local it made every thread
 * of lkvm, vCPUs included, zero 16 KiB more when it started.) */
static ssize_t read_direct(struct req *r, int fd, uint32_t count, off_t off)
{
	struct iovec sl[VIRTQ_MAX_SEGS];
	unsigned int k = iov_slice(r->iov, r->niov, P9_HDR + 4, count, sl,
				   VIRTQ_MAX_SEGS);

	return k ? preadv(fd, sl, (int)k, off) : 0;
}

static int h_read(struct req *r)
{
	uint32_t id = p9_get32(r->in), count;
	uint64_t off = p9_get64(r->in);
	uint8_t *data = NULL;
	struct fid *f;
	ssize_t n;
	bool direct;
	int err;

	count = p9_get32(r->in);
	if (off > INT64_MAX)
		return -EINVAL;
	err = req_fid(r, id, &f);
	if (err)
		return err;
	count = MIN(count, room(r, P9_HDR + 4));
	p9_put32(r->out, 0);
	direct = r->iov && !f->xattr;
	if (!direct)
		data = p9_putspace(r->out, count);
	if (f->xattr) {
		n = off >= f->xlen ? 0 : (ssize_t)MIN(count, f->xlen - off);
		if (n)
			memcpy(data, f->xdata + off, (size_t)n);
	} else if (f->ofd < 0 || S_ISDIR(f->type)) {
		n = -1;
		errno = S_ISDIR(f->type) ? EISDIR : EBADF;
	} else if (direct) {
		n = read_direct(r, f->ofd, count, (off_t)off);
	} else {
		n = pread(f->ofd, data, count, (off_t)off);
	}
	fid_put(r->s, f);
	if (n < 0)
		return -errno;
	put_le32(r->out->buf + P9_HDR, (uint32_t)n);
	if (direct) {
		r->out->pos = P9_HDR + 4;
		r->direct = (uint32_t)n;
	} else {
		r->out->pos = P9_HDR + 4 + (uint32_t)n;
	}
	return 0;
}

static int h_write(struct req *r)
{
	uint32_t id = p9_get32(r->in), count;
	uint64_t off = p9_get64(r->in);
	const struct p9_split *sp = r->split;
	const uint8_t *data = NULL;
	struct iovec sl[VIRTQ_MAX_SEGS];
	unsigned int k = 0;
	struct fid *f;
	ssize_t n;
	int err;

	count = p9_get32(r->in);
	if (sp) {
		/* The head is the header alone; the data is the tail. */
		if (r->in->pos != r->in->len || count > sp->tail_len)
			return -EINVAL;
	} else {
		data = p9_getbytes(r->in, count);
	}
	if (r->in->bad)
		return -EINVAL;
	if (r->s->ro)
		return -EROFS;
	if (off > INT64_MAX)
		return -EINVAL;
	err = req_fid(r, id, &f);
	if (err)
		return err;
	if (sp)
		k = iov_slice(sp->tail, sp->ntail, 0, count, sl, VIRTQ_MAX_SEGS);
	if (f->ofd < 0 || S_ISDIR(f->type)) {
		n = -1;
		errno = S_ISDIR(f->type) ? EISDIR : EBADF;
	} else if (sp) {
		n = k ? pwritev(f->ofd, sl, (int)k, (off_t)off) : 0;
	} else {
		n = pwrite(f->ofd, data, count, (off_t)off);
	}
	fid_put(r->s, f);
	if (n < 0)
		return -errno;
	p9_put32(r->out, (uint32_t)n);
	return 0;
}

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static uint8_t dtype_qid(unsigned char t)
{
	return t == DT_DIR ? P9_QTDIR : t == DT_LNK ? P9_QTSYMLINK : P9_QTFILE;
}

static int h_readdir(struct req *r)
{
	uint32_t id = p9_get32(r->in), count;
	uint64_t off = p9_get64(r->in);
	struct p9_out *o = r->out;
	char buf[16384];
	struct fid *f;
	uint32_t start;
	long n;
	int err = 0;

	count = p9_get32(r->in);
	ARGS_OK(r);
	if (off > INT64_MAX)
		return -EINVAL;
	f = fid_get(r->s, id);
	if (!f)
		return -EBADF;
	if (f->ofd < 0 || !S_ISDIR(f->type)) {
		err = f->ofd < 0 ? -EBADF : -ENOTDIR;
		fid_put(r->s, f);
		return err;
	}
	count = MIN(count, room(r, P9_HDR + 4));
	p9_put32(o, 0);
	start = o->pos;
	pthread_mutex_lock(&f->dir_lock);
	if (lseek(f->ofd, (off_t)off, SEEK_SET) < 0) {
		err = -errno;
		goto out;
	}
	n = syscall(SYS_getdents64, f->ofd, buf, sizeof(buf));
	if (n < 0) {
		err = -errno;
		goto out;
	}
	for (long pos = 0; pos < n;) {
		struct linux_dirent64 *d = (void *)(buf + pos);
		size_t nl = strlen(d->d_name);
		struct p9_qid q = { .type = dtype_qid(d->d_type),
				    .path = d->d_ino };

		/* qid[13] offset[8] type[1] name[s] */
		if (o->pos - start + P9_QID_SIZE + 8 + 1 + 2 + nl > count)
			break;
		p9_putqid(o, &q);
		p9_put64(o, (uint64_t)d->d_off);
		p9_put8(o, d->d_type);
		p9_putstr(o, d->d_name);
		pos += d->d_reclen;
	}
	if (o->pos == start && n > 0 && count)
		err = -EINVAL;	/* count too small for one entry */
	put_le32(o->buf + P9_HDR, o->pos - start);
out:
	pthread_mutex_unlock(&f->dir_lock);
	fid_put(r->s, f);
	return err;
}

static int h_fsync(struct req *r)
{
	uint32_t id = p9_get32(r->in);
	struct fid *f;
	int err;

	/* datasync[4] follows in newer clients; fsync covers both. */
	err = req_fid(r, id, &f);
	if (err)
		return err;
	err = f->ofd < 0 ? -EBADF : fsync(f->ofd) ? -errno : 0;
	fid_put(r->s, f);
	return err;
}

/* Open-file-description locks: they belong to the fid, never block. */
static int lock_type(uint8_t t)
{
	return t == P9_LOCK_RDLCK ? F_RDLCK : t == P9_LOCK_WRLCK ? F_WRLCK :
	       t == P9_LOCK_UNLCK ? F_UNLCK : -1;
}

static int h_lock(struct req *r)
{
	uint32_t id = p9_get32(r->in);
	int type = lock_type(p9_get8(r->in));
	struct flock fl = { 0 };
	char client[256];
	struct fid *f;
	uint8_t status;

	p9_get32(r->in);	/* flags: blocking is the client's loop */
	fl.l_start = (off_t)p9_get64(r->in);
	fl.l_len = (off_t)p9_get64(r->in);
	p9_get32(r->in);	/* proc_id */
	p9_getstr(r->in, client, sizeof(client));
	ARGS_OK(r);
	if (type < 0 || fl.l_start < 0 || fl.l_len < 0)
		return -EINVAL;
	fl.l_type = (short)type;
	fl.l_whence = SEEK_SET;
	f = fid_get(r->s, id);
	if (!f)
		return -EBADF;
	if (f->ofd < 0)
		status = P9_LOCK_ERROR;
	else if (fcntl(f->ofd, F_OFD_SETLK, &fl) == 0)
		status = P9_LOCK_SUCCESS;
	else if (errno == EAGAIN || errno == EACCES)
		status = P9_LOCK_BLOCKED;
	else
		status = P9_LOCK_ERROR;
	fid_put(r->s, f);
	p9_put8(r->out, status);
	return 0;
}

static int h_getlock(struct req *r)
{
	uint32_t id = p9_get32(r->in), proc;
	int type = lock_type(p9_get8(r->in));
	struct flock fl = { 0 };
	char client[256];
	struct fid *f;
	int err;

	fl.l_start = (off_t)p9_get64(r->in);
	fl.l_len = (off_t)p9_get64(r->in);
	proc = p9_get32(r->in);
	p9_getstr(r->in, client, sizeof(client));
	ARGS_OK(r);
	if (type < 0 || type == F_UNLCK || fl.l_start < 0 || fl.l_len < 0)
		return -EINVAL;
	fl.l_type = (short)type;
	fl.l_whence = SEEK_SET;
	f = fid_get(r->s, id);
	if (!f)
		return -EBADF;
	err = f->ofd < 0 ? -EBADF :
	      fcntl(f->ofd, F_OFD_GETLK, &fl) ? -errno : 0;
	fid_put(r->s, f);
	if (err)
		return err;
	p9_put8(r->out, fl.l_type == F_RDLCK ? P9_LOCK_RDLCK :
			fl.l_type == F_WRLCK ? P9_LOCK_WRLCK : P9_LOCK_UNLCK);
	p9_put64(r->out, (uint64_t)fl.l_start);
	p9_put64(r->out, (uint64_t)fl.l_len);
	p9_put32(r->out, fl.l_type == F_UNLCK ? proc : 0);
	p9_putstr(r->out, fl.l_type == F_UNLCK ? client : "");
	return 0;
}

/*
 * Txattrwalk: newfid reads the value of one extended attribute, or with
 * an empty name the list of names. Read through the file's /proc/self/fd
 * link, which reaches the file the fid holds.
 */
static int h_xattrwalk(struct req *r)
{
	uint32_t id = p9_get32(r->in), newid = p9_get32(r->in);
	char name[256], p[64];
	uint8_t *data;
	struct fid *f, *nf;
	ssize_t n;
	int fd, err;

	p9_getstr(r->in, name, sizeof(name));
	err = req_fid(r, id, &f);
	if (err)
		return err;
	data = malloc(XATTR_MAX);
	procpath(p, sizeof(p), f->pfd);
	if (!data)
		n = -1, errno = ENOMEM;
	else if (S_ISLNK(f->type))
		n = -1, errno = ENODATA;
	else if (name[0])
		n = getxattr(p, name, data, XATTR_MAX);
	else
		n = listxattr(p, (char *)data, XATTR_MAX);
	fd = n < 0 ? -1 : fcntl(f->pfd, F_DUPFD_CLOEXEC, 0);
	err = n < 0 ? -errno : fd < 0 ? -errno : 0;
	nf = err ? NULL : fid_new(fd, f->type, "");
	fid_put(r->s, f);
	if (!err && !nf) {
		close(fd);
		err = -ENOMEM;
	}
	if (err) {
		free(data);
		return err;
	}
	nf->xattr = true;
	nf->xdata = data;
	nf->xlen = (uint32_t)n;
	err = fid_install(r->s, newid, nf, newid == id);
	if (err)
		return err;
	p9_put64(r->out, (uint64_t)n);
	return 0;
}

static int h_xattrcreate(struct req *r)
{
	return r->s->ro ? -EROFS : -EOPNOTSUPP;
}

typedef int (*handler_fn)(struct req *r);

static const handler_fn handlers[256] = {
	[P9_TSTATFS] = h_statfs,
	[P9_TLOPEN] = h_lopen,
	[P9_TLCREATE] = h_lcreate,
	[P9_TSYMLINK] = h_symlink,
	[P9_TMKNOD] = h_mknod,
	[P9_TRENAME] = h_rename,
	[P9_TREADLINK] = h_readlink,
	[P9_TGETATTR] = h_getattr,
	[P9_TSETATTR] = h_setattr,
	[P9_TXATTRWALK] = h_xattrwalk,
	[P9_TXATTRCREATE] = h_xattrcreate,
	[P9_TREADDIR] = h_readdir,
	[P9_TFSYNC] = h_fsync,
	[P9_TLOCK] = h_lock,
	[P9_TGETLOCK] = h_getlock,
	[P9_TLINK] = h_link,
	[P9_TMKDIR] = h_mkdir,
	[P9_TRENAMEAT] = h_renameat,
	[P9_TUNLINKAT] = h_unlinkat,
	[P9_TVERSION] = h_version,
	[P9_TAUTH] = h_auth,
	[P9_TATTACH] = h_attach,
	[P9_TFLUSH] = h_flush,
	[P9_TWALK] = h_walk,
	[P9_TREAD] = h_read,
	[P9_TWRITE] = h_write,
	[P9_TCLUNK] = h_clunk,
	[P9_TREMOVE] = h_remove,
};

/* ---- the entry points ------------------------------------------------------ */

static bool tag_test(const uint64_t *map, uint16_t t)
{
	return (map[t / 64] >> (t % 64)) & 1;
}

static void tag_set(uint64_t *map, uint16_t t, bool on)
{
	if (on)
		map[t / 64] |= 1ull << (t % 64);
	else
		map[t / 64] &= ~(1ull << (t % 64));
}

int p9_tag_claim(struct p9_server *s, uint16_t tag, bool flush)
{
	int err = 0;

	pthread_mutex_lock(&s->lock);
	if (tag_test(s->tags, tag)) {
		err = -EINVAL;
	} else {
		tag_set(s->tags, tag, true);
		tag_set(s->flushes, tag, flush);
	}
	pthread_mutex_unlock(&s->lock);
	return err;
}

void p9_tag_release(struct p9_server *s, uint16_t tag)
{
	pthread_mutex_lock(&s->lock);
	tag_set(s->tags, tag, false);
	tag_set(s->flushes, tag, false);
	pthread_cond_broadcast(&s->tag_done);
	pthread_mutex_unlock(&s->lock);
}

static uint32_t handle(struct p9_server *s, const void *req, uint32_t len,
		       const struct p9_split *sp, void *rep, uint32_t cap,
		       const struct iovec *iov, unsigned int niov,
		       uint32_t *direct)
{
	const uint8_t *b = req;
	struct p9_in in = { .buf = b, .len = len };
	struct p9_out out = { .buf = rep };
	struct req r = { .s = s, .in = &in, .out = &out, .iov = iov,
			 .niov = niov, .split = sp };
	uint64_t total = (uint64_t)len + (sp ? sp->tail_len : 0);
	uint32_t size, msize;
	uint8_t type;
	handler_fn fn;
	bool tracked;
	int err;

	if (len < P9_HDR)
		return p9_lerror(rep, cap, P9_NOTAG, EINVAL);
	size = p9_get32(&in);
	type = p9_get8(&in);
	r.tag = p9_get16(&in);
	/* The size field must be the message's size, and a T-message's. */
	if (size != total || (type & 1) || (sp && type != P9_TWRITE))
		return p9_lerror(rep, cap, r.tag, EINVAL);
	fn = handlers[type];
	if (!fn)
		return p9_lerror(rep, cap, r.tag, EOPNOTSUPP);
	msize = __atomic_load_n(&s->msize, __ATOMIC_ACQUIRE);
	if (type != P9_TVERSION) {
		if (!msize)
			return p9_lerror(rep, cap, r.tag, EPROTO);
		if (total > msize)
			return p9_lerror(rep, cap, r.tag, EMSGSIZE);
		cap = MIN(cap, msize);
	}
	out.cap = cap;

	/* A tag names one request in flight. */
	tracked = r.tag != P9_NOTAG;
	if (tracked && p9_tag_claim(s, r.tag, type == P9_TFLUSH))
		return p9_lerror(rep, cap, r.tag, EINVAL);

	p9_msg_begin(&out, type + 1, r.tag);
	err = fn(&r);
	if (!err && in.bad)
		err = -EINVAL;
	size = err ? 0 : p9_msg_end(&out);
	if (!err && !size)
		err = -ENOBUFS;	/* the reply does not fit the buffers */
	if (err) {
		size = p9_lerror(rep, cap, r.tag, (uint32_t)-err);
	} else if (r.direct) {
		/* room() kept header + data within cap. */
		size += r.direct;
		put_le32(rep, size);
		*direct = r.direct;
	}

	if (tracked)
		p9_tag_release(s, r.tag);
	return size;
}

uint32_t p9_handle(struct p9_server *s, const void *req, uint32_t len,
		   void *rep, uint32_t cap)
{
	uint32_t direct = 0;

	return handle(s, req, len, NULL, rep, cap, NULL, 0, &direct);
}

uint32_t p9_handle_split(struct p9_server *s, const void *head, uint32_t len,
			 const struct p9_split *sp, void *rep, uint32_t cap,
			 const struct iovec *iov, unsigned int niov)
{
	uint32_t direct = 0;
	uint32_t size = handle(s, head, len, sp, rep, cap, iov, niov, &direct);

	iov_from_buf(iov, niov, 0, rep, size - direct);
	return size;
}

uint32_t p9_handle_iov(struct p9_server *s, const void *req, uint32_t len,
		       void *rep, uint32_t cap, const struct iovec *iov,
		       unsigned int niov)
{
	return p9_handle_split(s, req, len, NULL, rep, cap, iov, niov);
}

uint32_t p9_msize(struct p9_server *s)
{
	return __atomic_load_n(&s->msize, __ATOMIC_ACQUIRE);
}

void p9_server_reset(struct p9_server *s)
{
	fid_clunk_all(s);
	__atomic_store_n(&s->msize, 0, __ATOMIC_RELEASE);
}

void p9_server_no_openat2(struct p9_server *s)
{
	s->no_openat2 = true;
}

struct p9_server *p9_server_new(const char *root, bool ro, char *err,
				size_t errlen)
{
	struct p9_server *s = calloc(1, sizeof(*s));
	struct stat st;

	if (!s) {
		snprintf(err, errlen, "%s", strerror(ENOMEM));
		return NULL;
	}
	s->rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (s->rootfd < 0 || fstat_fd(s->rootfd, &st)) {
		snprintf(err, errlen, "'%s': %s", root, strerror(errno));
		if (s->rootfd >= 0)
			close(s->rootfd);
		free(s);
		return NULL;
	}
	s->rootdev = st.st_dev;
	s->ro = ro;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->tag_done, NULL);
	return s;
}

void p9_server_free(struct p9_server *s)
{
	if (!s)
		return;
	fid_clunk_all(s);
	close(s->rootfd);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->tag_done);
	free(s);
}
