/* qubesd-console SOURCE admin.vm.Console DEST: Qubes' dom0 program
 * /etc/qubes-rpc/admin.vm.Console, which a qube's admin.vm.Console call to DEST runs
 * once the qrexec policy has allowed it (Qubes' default policy denies it: a console is
 * a root shell in DEST). As Qubes' script: asks bulkheadd for DEST's console (as SOURCE:
 * admin.vm.Console, whose refusal is passed on as it is), takes the console exclusively
 * (a second caller at the same time exits 200, as `flock -n -E 200` makes it), then
 * relays the call's stdin to the console and the console to its stdout (as `socat -
 * OPEN:PATH`) until the caller's stdin ends or the console goes. qrexec-daemon runs it
 * when dom0 has no service file of that name. */
#include "admin_client.h"
#include "cleanup.h"
#include "io.h"
#include "names.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4 || strcmp(argv[2], "admin.vm.Console") || !bh_qube_name_valid(argv[1], NULL) ||
        !bh_qube_name_valid(argv[3], NULL)) {
        fprintf(stderr, "usage: qubesd-console SOURCE admin.vm.Console DEST\n");
        return 2;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "admin.vm.Console+ %s name %s", argv[1], argv[3]);
    const char *sp = bh_admin_socket_path();
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (n < 0 || (size_t)n >= sizeof req || strlen(sp) >= sizeof sa.sun_path)
        return 2;
    strcpy(sa.sun_path, sp);
    _cleanup_close_ int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0 || bh_write_all(s, req, (size_t)n + 1) < 0) {
        fprintf(stderr, "qubesd-console: bulkheadd: %s\n", strerror(errno));
        return 125;
    }
    shutdown(s, SHUT_WR);
    char reply[1024];
    /* bulkheadd sends the console open with its reply: we are not root, the pty is */
    _cleanup_close_ int con = -1;
    ssize_t r = bh_recv_with_fd(s, reply, sizeof reply - 1, &con);
    if (r > 0) {
        ssize_t more = bh_read_all(s, reply + r, sizeof reply - 1 - (size_t)r);
        r = more < 0 ? -1 : r + more;
    }
    if (r < 2 || reply[0] != '0' || reply[1] != '\0') {
        if (r > 0)
            (void)bh_write_all(1, reply, (size_t)r);
        return 1;
    }
    reply[r] = '\0';
    const char *path = reply + 2;
    struct stat st;
    if (strncmp(path, "/dev/pts/", 9) || strchr(path + 9, '/'))
        return 1;
    if (con < 0) /* no fd with the reply: run by root, open the path */
        con = stat(path, &st) == 0 && S_ISCHR(st.st_mode) ? open(path, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
    if (con < 0 || fstat(con, &st) < 0 || !S_ISCHR(st.st_mode))
        return 1;
    if (flock(con, LOCK_EX | LOCK_NB) < 0)
        return 200;
    struct pollfd p[2] = { { .fd = 0, .events = POLLIN }, { .fd = con, .events = POLLIN } };
    char buf[4096];
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (p[0].revents) {
            ssize_t k = read(0, buf, sizeof buf);
            if (k <= 0)
                return 0; /* the caller is done */
            if (bh_write_all(con, buf, (size_t)k) < 0)
                return 1;
        }
        if (p[1].revents) {
            ssize_t k = read(con, buf, sizeof buf);
            if (k <= 0)
                return 0; /* the console went with its qube */
            if (bh_write_all(1, buf, (size_t)k) < 0)
                return 0;
        }
    }
}
