#include "monitor_proto.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

struct call_hdr {
    uint32_t op, slot;
    int32_t dom0_port;
    char ident[BH_QX_IDENT_LEN];
    char target[BH_QX_TARGET_LEN];
};

int bh_qx_mon_send_call(int fd, uint32_t slot, int32_t dom0_port, const char *ident, const char *target,
                        const char *service)
{
    struct call_hdr h = { .op = BH_QX_MON_CALL, .slot = slot, .dom0_port = dom0_port };
    size_t sl = strlen(service);
    if (strlen(ident) >= sizeof h.ident || strlen(target) >= sizeof h.target || sl > BH_QX_MAX_SERVICE) {
        errno = EINVAL;
        return -1;
    }
    memcpy(h.ident, ident, strlen(ident));
    memcpy(h.target, target, strlen(target));
    struct iovec iov[2] = { { &h, sizeof h }, { (void *)service, sl + 1 } };
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
    ssize_t w;
    while ((w = sendmsg(fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return w == (ssize_t)(sizeof h + sl + 1) ? 0 : -1;
}

static bool terminated(const char *p, size_t n) { return memchr(p, 0, n) != NULL; }

int bh_qx_mon_parse_call(const void *msg, size_t n, uint32_t max_slot, int32_t port_lo, int32_t port_hi,
                         struct bh_qx_mon_call *c, bh_error *err)
{
    if (n > sizeof(struct call_hdr) + BH_QX_MAX_SERVICE + 1 || n < sizeof(struct call_hdr) + 2)
        return bh_fail(err, EMSGSIZE, "message of %zu bytes", n);
    struct call_hdr h;
    memcpy(&h, msg, sizeof h);
    const char *svc = (const char *)msg + sizeof h;
    size_t sl = n - sizeof h; /* with its NUL */
    if (h.op != BH_QX_MON_CALL)
        return bh_fail(err, EPROTO, "unknown request %u", h.op);
    if (h.slot >= max_slot)
        return bh_fail(err, ERANGE, "slot %u", h.slot);
    if (h.dom0_port != -1 && (h.dom0_port < port_lo || h.dom0_port >= port_hi))
        return bh_fail(err, ERANGE, "port %d", h.dom0_port);
    if (!terminated(h.ident, sizeof h.ident) || !bh_qx_ident_valid(h.ident))
        return bh_fail(err, EINVAL, "bad ident");
    if (!terminated(h.target, sizeof h.target) || !bh_qx_target_valid(h.target))
        return bh_fail(err, EINVAL, "bad target");
    if (svc[sl - 1] != '\0' || strlen(svc) != sl - 1 || !bh_qx_service_valid(svc))
        return bh_fail(err, EINVAL, "bad service");
    *c = (struct bh_qx_mon_call){ .slot = h.slot, .dom0_port = h.dom0_port };
    memcpy(c->ident, h.ident, sizeof c->ident);
    memcpy(c->target, h.target, sizeof c->target);
    c->service = strdup(svc);
    if (!c->service)
        return bh_fail(err, ENOMEM, "out of memory");
    return 1;
}

int bh_qx_mon_recv_call(int fd, uint32_t max_slot, int32_t port_lo, int32_t port_hi, struct bh_qx_mon_call *c,
                        bh_error *err)
{
    static char buf[sizeof(struct call_hdr) + BH_QX_MAX_SERVICE + 2];
    /* no control buffer: fds the other side tries to pass are closed by the kernel;
     * MSG_TRUNC: the real length of an oversized message, which is then refused */
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, MSG_TRUNC)) < 0 && errno == EINTR)
        ;
    if (n == 0)
        return 0;
    if (n < 0)
        return bh_fail_errno(err, "monitor channel");
    return bh_qx_mon_parse_call(buf, (size_t)n, max_slot, port_lo, port_hi, c, err);
}

int bh_qx_mon_send(int fd, uint32_t op, uint32_t slot, int pass_fd)
{
    struct bh_qx_mon_msg m = { op, slot };
    struct iovec iov = { &m, sizeof m };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (pass_fd >= 0) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof u.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
    }
    ssize_t w; /* never blocks: the monitor must not wait on the side it supervises */
    while ((w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 && errno == EINTR)
        ;
    return w == (ssize_t)sizeof m ? 0 : -1;
}

int bh_qx_mon_recv(int fd, struct bh_qx_mon_msg *m, int *passed_fd)
{
    *passed_fd = -1;
    struct iovec iov = { m, sizeof *m };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    ssize_t n;
    while ((n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (n <= 0)
        return (int)n;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(passed_fd, CMSG_DATA(cm), sizeof(int));
    return n == (ssize_t)sizeof *m ? 1 : -1;
}
