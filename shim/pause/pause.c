/*
 * crius's pause program: the first process of every pod sandbox. It holds the pod's
 * namespaces open, reaps orphaned children (it is PID 1 of a shared PID namespace) and
 * exits cleanly on SIGINT/SIGTERM. Built statically so the image needs nothing else.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_terminate(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("crius-pause\n");
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "crius-pause: warning: not running as PID 1\n");
    }
    struct sigaction term = {0};
    term.sa_handler = on_terminate;
    if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0) {
        return 1;
    }
    struct sigaction child = {0};
    child.sa_handler = on_child;
    child.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &child, NULL) < 0) {
        return 2;
    }
    for (;;) {
        pause();
    }
    return 42;
}
