#include "admin_client.h"
#include "buf.h"
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

void bh_admin_reply_free(struct bh_admin_reply *r)
{
    free(r->body);
    free(r->exc_type);
    free(r->exc_msg);
    memset(r, 0, sizeof *r);
}

const char *bh_admin_socket_path(void)
{
    const char *s = getenv("BULKHEAD_SOCKET");
    return s && *s ? s : BH_ADMIN_DEFAULT_SOCKET;
}

static char admin_source[64] = "dom0";

void bh_admin_set_source(const char *name)
{
    snprintf(admin_source, sizeof admin_source, "%s", name);
}

static int admin_connect(bh_error *err)
{
    const char *path = bh_admin_socket_path();
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return bh_fail(err, ENAMETOOLONG, "socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bh_fail_errno(err, "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return bh_fail_errno(err, "cannot connect to bulkheadd at %s", path);
    return steal_fd(&fd);
}

/* send(2) with MSG_NOSIGNAL: a daemon that closed the connection (going away, or past
 * a caller's connection cap) is an error to report, not a SIGPIPE that ends the tool
 * without a word. */
static int send_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_request(int fd, const char *method, const char *arg, const char *dest,
                        const void *payload, size_t plen, bh_error *err)
{
    _cleanup_buf_ bh_buf b;
    bh_buf_init(&b, 0);
    if (bh_buf_printf(&b, "%s+%s %s name %s", method, arg ? arg : "", admin_source, dest) < 0 ||
        bh_buf_addc(&b, '\0') < 0 || bh_buf_add(&b, payload, plen) < 0)
        return bh_fail_errno(err, "building request");
    if (send_all(fd, b.data, b.len) < 0)
        return bh_fail_errno(err, "sending request");
    return 0;
}

/* Undoes Qubes' %-escaping of exception messages ("%%" -> "%"). */
static char *unescape_pct(const char *s)
{
    char *o = malloc(strlen(s) + 1), *p = o;
    if (!o)
        return NULL;
    for (; *s; s++) {
        *p++ = *s;
        if (s[0] == '%' && s[1] == '%')
            s++;
    }
    *p = '\0';
    return o;
}

int bh_admin_call(const char *method, const char *arg, const char *dest,
                  const void *payload, size_t plen, struct bh_admin_reply *out, bh_error *err)
{
    return bh_admin_call_fd(method, arg, dest, payload, plen, out, NULL, err);
}

int bh_admin_send(const char *method, const char *arg, const char *dest, const void *payload, size_t plen,
                  bh_error *err)
{
    _cleanup_close_ int fd = admin_connect(err);
    if (fd < 0)
        return -1;
    if (send_request(fd, method, arg, dest, payload, plen, err) < 0)
        return -1;
    shutdown(fd, SHUT_WR);
    return steal_fd(&fd);
}

int bh_admin_recv(int fd, struct bh_admin_reply *out, int *fd_out, bh_error *err)
{
    memset(out, 0, sizeof *out);
    if (fd_out)
        *fd_out = -1;
    _cleanup_buf_ bh_buf b;
    bh_buf_init(&b, BH_ADMIN_MAX_RESPONSE);
    char chunk[16384];
    for (bool first = true;; first = false) {
        /* bulkheadd sends a passed fd with the reply's first bytes */
        ssize_t r = first && fd_out ? bh_recv_with_fd(fd, chunk, sizeof chunk, fd_out) : read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return bh_fail_errno(err, "reading reply");
        if (r == 0)
            break;
        if (bh_buf_add(&b, chunk, (size_t)r) < 0)
            return bh_fail(err, E2BIG, "reply too large");
    }
    if (b.len >= 2 && b.data[0] == '0' && b.data[1] == '\0') {
        out->ok = 1;
        out->len = b.len - 2;
        out->body = malloc(out->len + 1);
        if (!out->body)
            return bh_fail_errno(err, "malloc");
        memcpy(out->body, b.data + 2, out->len);
        out->body[out->len] = '\0';
        return 0;
    }
    if (b.len >= 2 && b.data[0] == '2' && b.data[1] == '\0') {
        /* 2\0type\0traceback\0message\0 */
        const char *f[3];
        size_t pos = 2;
        for (int i = 0; i < 3; i++) {
            const char *nul = memchr(b.data + pos, '\0', b.len - pos);
            if (!nul)
                return bh_fail(err, EBADMSG, "malformed error reply");
            f[i] = b.data + pos;
            pos = (size_t)(nul - b.data) + 1;
        }
        out->ok = 0;
        out->exc_type = strdup(f[0]);
        out->exc_msg = unescape_pct(f[2]);
        if (!out->exc_type || !out->exc_msg)
            return bh_fail_errno(err, "malloc");
        return 0;
    }
    if (b.len == 0)
        return bh_fail(err, ECONNRESET, "bulkheadd closed the connection without a reply");
    return bh_fail(err, EBADMSG, "malformed reply");
}

int bh_admin_call_fd(const char *method, const char *arg, const char *dest, const void *payload, size_t plen,
                     struct bh_admin_reply *out, int *fd_out, bh_error *err)
{
    memset(out, 0, sizeof *out);
    if (fd_out)
        *fd_out = -1;
    _cleanup_close_ int fd = bh_admin_send(method, arg, dest, payload, plen, err);
    if (fd < 0)
        return -1;
    return bh_admin_recv(fd, out, fd_out, err);
}

int bh_admin_events_open(const char *dest, bh_error *err)
{
    return bh_admin_send("admin.Events", "", dest, "", 0, err);
}
