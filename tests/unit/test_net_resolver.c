/* The daemon's side of the resolver helper: only well-formed answers are taken; anything
 * else counts as the helper being gone (it is then replaced). */
#include "net/resolver.h"
#include "sanitized.h"
#include "tap.h"
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The helper's confinement, in a child: 0 = confined as it should be and the forbidden
 * call (what) returned; a signal number = killed by it; other = what went wrong. */
static int confined_then(int what)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (bh_resolver_confine("/etc/hosts", NULL) < 0)
            _exit(100);
        if (getuid() != 65534 || geteuid() != 65534)
            _exit(101);
        if (open("/etc/passwd", O_RDONLY | O_CLOEXEC) >= 0 || open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC) >= 0)
            _exit(102); /* the host's files are out of sight */
        if (open("/etc/resolv.conf", O_RDONLY | O_CLOEXEC) < 0)
            _exit(103); /* the one file it is given */
        if (socket(AF_INET6, SOCK_DGRAM, 0) < 0)
            _exit(104); /* what resolving needs still works */
        if (what == 1)
            (void)socket(AF_PACKET, SOCK_RAW, 0);
        else if (what == 2)
            (void)mkdir("/x", 0700);
        else if (what == 3)
            (void)open("/etc/resolv.conf", O_WRONLY | O_CLOEXEC);
        else if (what == 4)
            (void)fork();
        _exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFSIGNALED(st) ? WTERMSIG(st) : WIFEXITED(st) ? (WEXITSTATUS(st) ? 1000 + WEXITSTATUS(st) : 0) : -1;
}

int main(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    struct bh_resolver r = { 0, sv[0] };
    struct bh_resolver_ans a, got;
    CHECK(bh_resolver_recv(&r, &got) == 0); /* nothing yet */

    memset(&a, 0, sizeof a);
    a.id = 7;
    a.n = 2;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == 1 && got.id == 7 && got.n == 2);

    a.n = -1;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == 1 && got.n == -1);

    a.n = BH_RESOLVER_MAX_ADDRS + 1; /* more addresses than a record holds */
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == -1);
    a.n = -2;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == -1);
    a.n = 1; /* the same for the AAAA count */
    a.n6 = BH_RESOLVER_MAX_ADDRS + 1;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == -1);
    a.n6 = -2;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == -1);
    a.n6 = 3;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == 1 && got.n == 1 && got.n6 == 3);

    char big[sizeof a + 10];
    memset(big, 0, sizeof big);
    CHECK(send(sv[1], big, sizeof big, 0) == (ssize_t)sizeof big); /* too long */
    CHECK(bh_resolver_recv(&r, &got) == -1);
    CHECK(send(sv[1], big, 3, 0) == 3); /* too short */
    CHECK(bh_resolver_recv(&r, &got) == -1);

    /* requests: the name must fit */
    char name[BH_RESOLVER_HOST_MAX + 2];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK(bh_resolver_send(&r, 1, name) == -1);
    CHECK(bh_resolver_send(&r, 1, "web.test") == 0);
    struct bh_resolver_req q;
    CHECK(recv(sv[1], &q, sizeof q, 0) == (ssize_t)sizeof q && q.id == 1 && !strcmp(q.host, "web.test"));

    close(sv[1]);
    CHECK(bh_resolver_recv(&r, &got) == -1); /* EOF: gone */
    close(sv[0]);

    /* the confinement (needs root to make a mount namespace; bulkheadd runs as root) */
    if (geteuid() != 0) {
        printf("# skip: confinement checks need root\n");
        return tap_done();
    }
    int base = confined_then(0);
    if (base)
        fprintf(stderr, "confined child: %d\n", base);
    CHECK(base == 0);
    for (int what = 1; what <= 4; what++) {
        int got_sig = confined_then(what);
#ifdef BH_SANITIZED
        CHECK(got_sig == 0); /* sanitizer builds log the call instead of killing */
#else
        if (got_sig != SIGSYS)
            fprintf(stderr, "forbidden call %d: %d\n", what, got_sig);
        CHECK(got_sig == SIGSYS);
#endif
    }
    return tap_done();
}
