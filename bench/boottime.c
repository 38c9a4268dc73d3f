// SPDX-License-Identifier: GPL-2.0
/*
 * boottime CMD [ARGS]: runs CMD with stdout on a pipe and prints, in
 * milliseconds, the time from exec to its first output byte and to its
 * exit, its peak resident memory in KiB, its user and system CPU time in
 * ms, and its exit status:
 *   first_byte_ms exit_ms maxrss_kib user_ms sys_ms status
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	double t0, first = -1, end;
	struct rusage ru;
	int p[2], st, devnull;
	char buf[4096];
	pid_t pid;

	if (argc < 2) {
		fprintf(stderr, "usage: boottime CMD [ARGS]\n");
		return 2;
	}
	if (pipe(p) < 0)
		return 2;
	devnull = open("/dev/null", O_RDWR);
	t0 = now_ms();
	pid = fork();
	if (pid == 0) {
		dup2(devnull, 0);
		dup2(p[1], 1);
		dup2(devnull, 2);
		close(p[0]);
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		ssize_t n = read(p[0], buf, sizeof(buf));

		if (n > 0 && first < 0)
			first = now_ms() - t0;
		if (n <= 0)
			break;
	}
	wait4(pid, &st, 0, &ru);
	end = now_ms() - t0;
	printf("%.2f %.2f %ld %.2f %.2f %d\n", first, end, ru.ru_maxrss,
	       ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3,
	       ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3,
	       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return 0;
}
