/* qubesd-query SOURCE METHOD[+ARG] DEST: a qube's Admin API call, arriving over qrexec
 * (service admin.*, target dom0, allowed by policy), forwarded to bulkheadd with the
 * calling qube as its source (PROTOCOLS.md §1). The payload is stdin (at most 64 KiB);
 * bulkheadd's raw reply goes to stdout, as Qubes' qubesd-query does. The qrexec daemon
 * runs this for admin.* calls that have no dom0 service file of their own. */
#include "admin_client.h"
#include "cleanup.h"
#include "io.h"
#include "names.h"
#include "proto.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PAYLOAD 65536

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: qubesd-query SOURCE METHOD[+ARG] DEST\n");
        return 2;
    }
    const char *src = argv[1], *method = argv[2], *dest = argv[3];
    if (!bh_qube_name_valid(src, NULL) || !bh_qx_service_valid(method) || strncmp(method, "admin.", 6) ||
        (strcmp(dest, "dom0") && !bh_qube_name_valid(dest, NULL))) {
        fprintf(stderr, "qubesd-query: invalid arguments\n");
        return 2;
    }
    static char req[MAX_PAYLOAD + 512];
    int n = snprintf(req, sizeof req, "%s%s %s name %s", method, strchr(method, '+') ? "" : "+", src, dest);
    if (n < 0 || (size_t)n >= 512)
        return 2;
    size_t len = (size_t)n + 1; /* the NUL after the header */
    ssize_t r = bh_read_all(0, req + len, MAX_PAYLOAD + 1);
    if (r < 0 || r > MAX_PAYLOAD) {
        fprintf(stderr, "qubesd-query: payload too large\n");
        return 1;
    }
    len += (size_t)r;
    const char *path = bh_admin_socket_path();
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return 125;
    strcpy(sa.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || bh_write_all(fd, req, len) < 0) {
        fprintf(stderr, "qubesd-query: bulkheadd: %s\n", strerror(errno));
        return 125;
    }
    shutdown(fd, SHUT_WR);
    char buf[65536];
    char first = 0;
    for (;;) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        if (!first)
            first = buf[0];
        if (bh_write_all(1, buf, (size_t)k) < 0)
            return 1;
    }
    return first == '0' ? 0 : 1;
}
