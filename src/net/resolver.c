#include "resolver.h"
#include "dns.h"
#include "netns.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void helper(int fd, const struct in_addr *servers, int n)
{
    for (;;) {
        struct bh_resolver_req q;
        ssize_t got = recv(fd, &q, sizeof q, 0);
        if (got == 0)
            _exit(0); /* the daemon is gone */
        if (got < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        struct bh_resolver_ans a;
        memset(&a, 0, sizeof a);
        a.id = q.id;
        a.n = a.n6 = -1;
        if ((size_t)got == sizeof q && memchr(q.host, '\0', sizeof q.host)) {
            a.n = bh_dns_resolve(-1, servers, n, q.host, AF_INET, a.a, BH_RESOLVER_MAX_ADDRS);
            a.n6 = bh_dns_resolve(-1, servers, n, q.host, AF_INET6, a.a6, BH_RESOLVER_MAX_ADDRS);
        }
        if (send(fd, &a, sizeof a, MSG_NOSIGNAL) < 0 && errno != EINTR)
            _exit(1);
    }
}

int bh_resolver_start(struct bh_resolver *r, int peer_nsfd, const char *resolv_conf, const struct in_addr *servers, int n,
                      bh_error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return bh_fail_errno(err, "resolver socketpair");
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return bh_fail_errno(err, "fork resolver");
    }
    if (pid == 0) {
        close(sv[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int saved = -1;
        if (peer_nsfd >= 0 && bh_netns_enter(peer_nsfd, &saved, NULL) < 0)
            _exit(112);
        /* only what it needs: the socket, as fd 3; no other fd of the daemon's */
        if (sv[1] != 3 && dup2(sv[1], 3) < 0)
            _exit(113);
        sv[1] = 3;
        if (syscall(SYS_close_range, 4u, ~0u, 0u) < 0)
            for (int fd = 4; fd < 65536; fd++)
                close(fd);
        signal(SIGPIPE, SIG_IGN);
        if (bh_resolver_confine(resolv_conf, NULL) < 0)
            _exit(111);
        helper(sv[1], servers, n);
        _exit(0);
    }
    close(sv[1]);
    int fl = fcntl(sv[0], F_GETFL);
    if (fl < 0 || fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = errno;
        close(sv[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        errno = e;
        return bh_fail_errno(err, "resolver socket");
    }
    r->pid = pid;
    r->fd = sv[0];
    return 0;
}

void bh_resolver_stop(struct bh_resolver *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
}

int bh_resolver_send(struct bh_resolver *r, uint32_t id, const char *host)
{
    struct bh_resolver_req q;
    memset(&q, 0, sizeof q);
    q.id = id;
    size_t n = strlen(host);
    if (n > BH_RESOLVER_HOST_MAX) {
        errno = EINVAL;
        return -1;
    }
    memcpy(q.host, host, n);
    return send(r->fd, &q, sizeof q, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof q ? 0 : -1;
}

int bh_resolver_recv(struct bh_resolver *r, struct bh_resolver_ans *out)
{
    for (;;) {
        /* one byte more than a record: a longer message is seen as too long */
        char buf[sizeof *out + 1];
        ssize_t got = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (got <= 0)
            return -1;
        if ((size_t)got != sizeof *out)
            return -1; /* not ours to guess at: the helper is treated as gone */
        memcpy(out, buf, sizeof *out);
        if (out->n < -1 || out->n > BH_RESOLVER_MAX_ADDRS || out->n6 < -1 || out->n6 > BH_RESOLVER_MAX_ADDRS)
            return -1;
        return 1;
    }
}
