/* A small QMP client: connect, greeting, qmp_capabilities, one command, close. QEMU
 * runs the guest, so a QEMU that a guest took over is hostile too: every read is
 * bounded (line length, total time) and every reply is parsed with json-c and checked
 * for the shape QMP promises. */
#include "vm.h"
#include "cleanup.h"
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QMP_LINE_MAX 65536

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct qmp {
    int fd;
    char buf[QMP_LINE_MAX];
    size_t len;
    long long deadline;
};

/* next JSON object (one line), NULL on timeout/EOF/junk */
static json_object *qmp_read(struct qmp *q, bh_error *err)
{
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            *nl = '\0';
            json_object *o = json_tokener_parse(q->buf);
            size_t used = (size_t)(nl - q->buf) + 1;
            memmove(q->buf, q->buf + used, q->len - used);
            q->len -= used;
            if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                bh_fail(err, EPROTO, "QMP: not a JSON object");
                return NULL;
            }
            return o;
        }
        if (q->len == sizeof q->buf) {
            bh_fail(err, EPROTO, "QMP: line longer than %d bytes", QMP_LINE_MAX);
            return NULL;
        }
        long long left = q->deadline - now_ms();
        struct pollfd p = { .fd = q->fd, .events = POLLIN };
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            bh_fail(err, ETIMEDOUT, "QMP: no answer");
            return NULL;
        }
        ssize_t n = read(q->fd, q->buf + q->len, sizeof q->buf - q->len);
        if (n <= 0) {
            bh_fail(err, EPIPE, "QMP: connection closed");
            return NULL;
        }
        q->len += (size_t)n;
    }
}

/* sends cmd, returns its "return" member (a new reference); events are skipped */
static json_object *qmp_exec(struct qmp *q, const char *cmd, bh_error *err)
{
    size_t l = strlen(cmd);
    if (write(q->fd, cmd, l) != (ssize_t)l) {
        bh_fail_errno(err, "QMP: write");
        return NULL;
    }
    for (int i = 0; i < 1000; i++) {
        json_object *o = qmp_read(q, err), *v;
        if (!o)
            return NULL;
        if (json_object_object_get_ex(o, "return", &v)) {
            json_object_get(v);
            json_object_put(o);
            return v;
        }
        if (json_object_object_get_ex(o, "error", &v)) {
            json_object *d;
            const char *desc = json_object_object_get_ex(v, "desc", &d) ? json_object_get_string(d) : "?";
            bh_fail(err, EIO, "QMP error: %.200s", desc ? desc : "?");
            json_object_put(o);
            return NULL;
        }
        json_object_put(o); /* an event */
    }
    bh_fail(err, EPROTO, "QMP: no reply among the events");
    return NULL;
}

int bh_qmp_command(const char *sock, const char *cmd, char **reply, int timeout_ms, bh_error *err)
{
    if (reply)
        *reply = NULL;
    _cleanup_free_ struct qmp *q = calloc(1, sizeof *q);
    if (!q)
        return bh_fail(err, ENOMEM, "QMP: out of memory");
    q->deadline = now_ms() + timeout_ms;
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    _cleanup_close_ int fd = q->fd;
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(sock) >= sizeof a.sun_path)
        return bh_fail(err, ENAMETOOLONG, "QMP socket path too long");
    strcpy(a.sun_path, sock);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        return bh_fail_errno(err, "QMP: connect %s", sock);
    json_object *greet = qmp_read(q, err), *v;
    bool ok = greet && json_object_object_get_ex(greet, "QMP", &v);
    json_object_put(greet);
    if (!ok)
        return greet ? bh_fail(err, EPROTO, "QMP: no greeting") : -1;
    json_object *caps = qmp_exec(q, "{\"execute\":\"qmp_capabilities\"}\n", err);
    if (!caps)
        return -1;
    json_object_put(caps);
    json_object *ret = qmp_exec(q, cmd, err);
    if (!ret)
        return -1;
    if (reply) {
        *reply = strdup(json_object_to_json_string_ext(ret, JSON_C_TO_STRING_PLAIN));
        if (!*reply) {
            json_object_put(ret);
            return bh_fail(err, ENOMEM, "QMP: out of memory");
        }
    }
    json_object_put(ret);
    return 0;
}

int bh_qmp_status(const char *sock, char *out, size_t n, bh_error *err)
{
    _cleanup_free_ char *r = NULL;
    if (bh_qmp_command(sock, "{\"execute\":\"query-status\"}\n", &r, 2000, err) < 0)
        return -1;
    json_object *o = json_tokener_parse(r), *s;
    int ret = -1;
    if (o && json_object_object_get_ex(o, "status", &s) && json_object_is_type(s, json_type_string)) {
        snprintf(out, n, "%s", json_object_get_string(s));
        ret = 0;
    } else {
        bh_fail(err, EPROTO, "QMP: query-status without a status");
    }
    json_object_put(o);
    return ret;
}
