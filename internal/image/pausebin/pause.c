/*
 * pause: the process that holds a crishim pod's namespaces open.
 *
 * It runs as PID 1 of the pod (or at least of its sandbox container), so it
 * must reap every orphan that gets reparented to it, and it must exit
 * promptly and cleanly when the runtime asks it to stop. Anything else is
 * wasted memory in every pod, hence plain libc and a static build.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PAUSE_VERSION
#define PAUSE_VERSION "1.0"
#endif

static void on_stop(int sig)
{
	/* _exit is async-signal-safe; exit() would run atexit handlers. */
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	int saved = errno;

	(void)sig;
	/* One SIGCHLD may stand for several exits: drain them all. */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int install(int sig, void (*handler)(int), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("crishim-pause %s\n", PAUSE_VERSION);
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not running as PID 1, orphans will not be reaped here\n");

	/*
	 * The kernel ignores signals a PID 1 has no handler for, so SIGTERM
	 * and SIGINT need explicit handlers to stop the pod.
	 */
	if (install(SIGTERM, on_stop, 0) < 0 || install(SIGINT, on_stop, 0) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	/* SA_NOCLDSTOP: stopped children are not zombies, nothing to reap. */
	if (install(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART) < 0) {
		perror("pause: sigaction");
		return 2;
	}

	for (;;)
		pause();
	/* not reached */
	return 42;
}
