/* qubesd-query SOURCE METHOD[+ARG] DEST: a qube's Admin API call, arriving over qrexec
 * (service admin.* or qubes.FeaturesRequest/NotifyTools/NotifyUpdates, target dom0,
 * allowed by policy), forwarded to bulkheadd with the
 * calling qube as its source (docs/admin.md). The payload is stdin (at most 64 KiB);
 * bulkheadd's raw reply goes to stdout, as Qubes' qubesd-query does. The qrexec daemon
 * runs this for admin.* calls that have no dom0 service file of their own.
 * admin.vm.List on dom0 is filtered per listed qube by policy (list_filtered). */
#include "admin_client.h"
#include "cleanup.h"
#include "io.h"
#include "names.h"
#include "proto.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PAYLOAD 65536
#define MAX_LIST_REPLY (8 << 20)

/* admin.vm.List on dom0 from a qube lists only the qubes that policy lets that qube
 * call admin.vm.List on (allow, not ask), as Qubes' admin extension filters it; the
 * call itself was allowed for target dom0 by the qrexec policy. The qrexec call process
 * that runs us evaluated that policy (it loaded policy.d before it gave up root; we
 * cannot read it) for every qube bulkheadd had and passes the names it may see in
 * $BULKHEAD_LIST_ALLOWED (space-separated). Fails closed: without it, the answer is an
 * error, never the whole list; a qube not named there is left out. */
static bool name_in(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, " ");
        if (k == n && !strncmp(p, name, n))
            return true;
        p += k;
        p += strspn(p, " ");
    }
    return false;
}

static int list_filtered(int fd, const char *src)
{
    size_t cap = 1 << 16, len = 0;
    _cleanup_free_ char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            return 1;
        if (len == cap) {
            if (cap >= MAX_LIST_REPLY)
                return 1;
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                return 1;
            buf = nb;
        }
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return 1;
        if (k == 0)
            break;
        len += (size_t)k;
    }
    if (len < 2 || buf[0] != '0' || buf[1] != '\0') { /* an exception: pass it on as is */
        (void)bh_write_all(1, buf, len);
        return 1;
    }
    const char *allowed = getenv("BULKHEAD_LIST_ALLOWED");
    if (!allowed) {
        static const char exc[] = "2\0QubesException\0\0Listing failed: no policy to filter by\0";
        fprintf(stderr, "qubesd-query: admin.vm.List from %s: no policy\n", src);
        (void)bh_write_all(1, exc, sizeof exc - 1);
        return 1;
    }
    if (bh_write_all(1, buf, 2) < 0)
        return 1;
    for (size_t off = 2; off < len;) {
        char *nl = memchr(buf + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - buf) + 1 : len;
        char name[64];
        size_t n = strcspn(buf + off, " \n");
        if (n > 0 && n < sizeof name && off + n <= end) {
            memcpy(name, buf + off, n);
            name[n] = '\0';
            if (name_in(allowed, name) && bh_write_all(1, buf + off, end - off) < 0)
                return 1;
        }
        off = end;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: qubesd-query SOURCE METHOD[+ARG] DEST\n");
        return 2;
    }
    const char *src = argv[1], *method = argv[2], *dest = argv[3];
    /* admin.* and Qubes' misc calls (qubes/api/misc.py); nothing else reaches bulkheadd. */
    bool misc = !strcmp(method, "qubes.FeaturesRequest") || !strcmp(method, "qubes.NotifyTools") ||
                !strcmp(method, "qubes.NotifyUpdates");
    if (!bh_qube_name_valid(src, NULL) || !bh_qx_service_valid(method) || (strncmp(method, "admin.", 6) && !misc) ||
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
    if (!strcmp(method, "admin.vm.List") && !strcmp(dest, "dom0"))
        return list_filtered(fd, src);
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
