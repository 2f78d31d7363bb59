/* Unit tests of the QMP client (qmp.c) against a QMP socket that returns junk: a QEMU
 * that a guest took over is as hostile as the guest. Each case is a real unix socket
 * served by a child process; the client must fail with the right error, in bounded
 * time, and a well-behaved server (the positive control) must work. */
#include "driver/vm/vm.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static char sock_path[108];

static void put(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Serves one connection: writes greeting, then one answer per line the client sends
 * (answers[i] for the i-th line; NULL: say nothing more), until the client closes. */
static pid_t serve(const char *greeting, const char *const answers[])
{
    unlink(sock_path);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0)
        exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN);
        int c = accept(l, NULL, NULL);
        if (greeting)
            put(c, greeting, strlen(greeting));
        char b[4096];
        ssize_t n;
        int line = 0;
        while ((n = read(c, b, sizeof b)) > 0)
            for (ssize_t i = 0; i < n; i++)
                if (b[i] == '\n' && answers && answers[line]) {
                    put(c, answers[line], strlen(answers[line]));
                    line++;
                }
        _exit(0);
    }
    close(l);
    return pid;
}

static long long ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* runs one command against the server; returns the error number (0: success) */
static int run(pid_t server, const char *cmd, char **reply, int timeout_ms, long long *took)
{
    bh_error err = { 0 };
    long long t0 = ms();
    int r = bh_qmp_command(sock_path, cmd, reply, timeout_ms, &err);
    *took = ms() - t0;
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    if (r < 0)
        fprintf(stderr, "  (expected) %s\n", err.msg);
    return r < 0 ? (err.errnum ? err.errnum : -1) : 0;
}

#define GREET "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n"
#define OK "{\"return\": {}}\n"

int main(void)
{
    snprintf(sock_path, sizeof sock_path, "/tmp/bh-test-qmp-%d.sock", (int)getpid());
    const char *cmd = "{\"execute\":\"query-status\"}\n";
    long long took;
    char *reply = NULL;

    /* control: a QMP that behaves */
    const char *good[] = { OK, "{\"event\": \"X\"}\n{\"return\": {\"status\": \"running\"}}\n", NULL };
    CHECK(run(serve(GREET, good), cmd, &reply, 2000, &took) == 0);
    CHECK(reply && strstr(reply, "running"));
    free(reply);
    reply = NULL;

    /* not JSON */
    CHECK(run(serve("this is not QMP\n", NULL), cmd, NULL, 2000, &took) == EPROTO);
    /* JSON, but not a greeting */
    CHECK(run(serve("[1,2,3]\n", NULL), cmd, NULL, 2000, &took) == EPROTO);
    CHECK(run(serve("{\"hello\": 1}\n", NULL), cmd, NULL, 2000, &took) == EPROTO);

    /* a line that never ends: bounded at 64 KiB, not read forever */
    char *big = malloc(200000);
    memset(big, 'x', 199999);
    big[199999] = '\0';
    CHECK(run(serve(big, NULL), cmd, NULL, 5000, &took) == EPROTO);
    free(big);

    /* silence: the deadline holds */
    CHECK(run(serve(NULL, NULL), cmd, NULL, 300, &took) == ETIMEDOUT);
    CHECK(took < 2000);
    /* greeting, then silence after the command */
    const char *mute[] = { OK, NULL };
    CHECK(run(serve(GREET, mute), cmd, NULL, 300, &took) == ETIMEDOUT);

    /* events forever instead of a reply */
    size_t evn = 2000 * 16 + 1;
    char *events = calloc(1, evn);
    for (int i = 0; i < 2000; i++)
        strcat(events, "{\"event\": \"E\"}\n");
    const char *flood[] = { OK, events, NULL };
    CHECK(run(serve(GREET, flood), cmd, NULL, 5000, &took) == EPROTO);
    free(events);

    /* an error with a huge description: reported, cut short */
    char *desc = malloc(40000);
    snprintf(desc, 40000, "{\"error\": {\"class\": \"X\", \"desc\": \"%0*d\"}}\n", 30000, 0);
    const char *error[] = { OK, desc, NULL };
    bh_error err = { 0 };
    pid_t s = serve(GREET, error);
    CHECK(bh_qmp_command(sock_path, cmd, NULL, 2000, &err) < 0 && err.errnum == EIO && strlen(err.msg) < 400);
    kill(s, SIGKILL);
    waitpid(s, NULL, 0);
    free(desc);

    /* query-status whose status is not a string */
    const char *odd[] = { OK, "{\"return\": {\"status\": 5}}\n", NULL };
    s = serve(GREET, odd);
    char st[32];
    CHECK(bh_qmp_status(sock_path, st, sizeof st, &err) < 0 && err.errnum == EPROTO);
    kill(s, SIGKILL);
    waitpid(s, NULL, 0);

    unlink(sock_path);
    if (fails)
        return 1;
    printf("qmp: all checks passed\n");
    return 0;
}
