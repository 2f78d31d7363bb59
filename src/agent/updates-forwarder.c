/* bulkhead-updates-forwarder (in a template): the template's package manager uses the
 * proxy http://127.0.0.1:8082/; each connection there is handed to qubes.UpdatesProxy
 * in the updates qube over qrexec (`qrexec-client-vm @default qubes.UpdatesProxy`, the
 * policy picks the target), as Qubes' qubes-updates-proxy-forwarder does. A template
 * has no network of its own: this is its only way out, and only where policy allows. */
#include "log.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PORT 8082
#define MAX_CHILDREN 32

static volatile sig_atomic_t children;

static void on_chld(int sig)
{
    (void)sig;
    int e = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        children--;
    errno = e;
}

int main(int argc, char **argv)
{
    bh_log_init("updates-forwarder");
    const char *client = argc > 1 ? argv[1] : "/usr/lib/bulkhead/qrexec-client-vm";
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_chld, .sa_flags = SA_RESTART | SA_NOCLDSTOP };
    sigaction(SIGCHLD, &sa, NULL);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(PORT), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 64) < 0) {
        bh_err("listen on 127.0.0.1:%d: %s", PORT, strerror(errno));
        return 1;
    }
    for (;;) {
        int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EINTR)
                sleep(1); /* out of fds: try again later rather than spin */
            continue;
        }
        if (children >= MAX_CHILDREN) {
            close(c); /* the package manager retries */
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            signal(SIGCHLD, SIG_DFL);
            signal(SIGPIPE, SIG_DFL);
            if (dup2(c, 0) < 0 || dup2(c, 1) < 0)
                _exit(1);
            execl(client, client, "@default", "qubes.UpdatesProxy", (char *)NULL);
            _exit(127);
        }
        if (pid > 0)
            children++;
        close(c);
    }
}
