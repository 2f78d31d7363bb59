#include "nl.h"
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "netns.h"

int bh_nl_open(struct bh_nl *nl, int nsfd, bh_error *err)
{
    memset(nl, 0, sizeof *nl);
    int saved = -1;
    if (nsfd >= 0 && bh_netns_enter(nsfd, &saved, err) < 0)
        return -1;
    nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    int e = errno;
    bh_netns_leave(saved);
    if (!nl->sock) {
        errno = e;
        return bh_fail_errno(err, "netlink socket");
    }
    if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
        bh_fail_errno(err, "netlink bind");
        mnl_socket_close(nl->sock);
        nl->sock = NULL;
        return -1;
    }
    nl->portid = mnl_socket_get_portid(nl->sock);
    nl->seq = (unsigned)time(NULL);
    return 0;
}

void bh_nl_close(struct bh_nl *nl)
{
    if (nl->sock)
        mnl_socket_close(nl->sock);
    nl->sock = NULL;
}

/* Sends one request and reads until its ACK (or error); cb sees data replies. */
static int talk(struct bh_nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
    nlh->nlmsg_seq = ++nl->seq;
    nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
        return -1;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl->sock, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        int r = mnl_cb_run(buf, (size_t)n, nl->seq, nl->portid, cb, data);
        if (r <= MNL_CB_STOP)
            return r < 0 ? -1 : 0;
    }
}

static struct nlmsghdr *start(char *buf, uint16_t type, uint16_t flags)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    return nlh;
}

int bh_nl_veth_create(struct bh_nl *nl, const struct bh_veth_end *a, const struct bh_veth_end *b, bh_error *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    if (strlen(a->name) >= IFNAMSIZ || strlen(b->name) >= IFNAMSIZ)
        return bh_fail(err, ENAMETOOLONG, "interface name too long");
    struct nlmsghdr *nlh = start(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC; /* not up yet: a veth end cannot open before its peer exists */
    mnl_attr_put_strz(nlh, IFLA_IFNAME, a->name);
    if (a->nsfd >= 0)
        mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)a->nsfd);
    if (a->mac)
        mnl_attr_put(nlh, IFLA_ADDRESS, 6, a->mac);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    struct nlattr *peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    struct ifinfomsg *pifi = mnl_nlmsg_put_extra_header(nlh, sizeof *pifi);
    pifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, b->name);
    if (b->nsfd >= 0)
        mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)b->nsfd);
    if (b->mac)
        mnl_attr_put(nlh, IFLA_ADDRESS, 6, b->mac);
    mnl_attr_nest_end(nlh, peer);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, info);
    if (talk(nl, nlh, NULL, NULL) < 0)
        return bh_fail_errno(err, "create veth %s/%s", a->name, b->name);
    return 0;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
    if (nlh->nlmsg_type == RTM_NEWLINK) {
        const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
        *(int *)data = ifi->ifi_index;
    }
    return MNL_CB_OK;
}

int bh_nl_ifindex(struct bh_nl *nl, const char *name)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    if (strlen(name) >= IFNAMSIZ)
        return 0;
    struct nlmsghdr *nlh = start(buf, RTM_GETLINK, 0);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    int idx = 0;
    if (talk(nl, nlh, link_cb, &idx) < 0)
        return 0;
    return idx;
}

int bh_nl_link_up(struct bh_nl *nl, int ifindex, bh_error *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = start(buf, RTM_NEWLINK, 0);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = ifindex;
    ifi->ifi_flags = ifi->ifi_change = IFF_UP;
    if (talk(nl, nlh, NULL, NULL) < 0)
        return bh_fail_errno(err, "set link %d up", ifindex);
    return 0;
}

int bh_nl_link_del(struct bh_nl *nl, const char *name, bh_error *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    if (strlen(name) >= IFNAMSIZ)
        return 0;
    struct nlmsghdr *nlh = start(buf, RTM_DELLINK, 0);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    if (talk(nl, nlh, NULL, NULL) < 0 && errno != ENODEV)
        return bh_fail_errno(err, "delete link %s", name);
    return 0;
}

static int addr_add(struct bh_nl *nl, int family, int ifindex, const void *local, size_t alen, unsigned prefix,
                    bh_error *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = start(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
    ifa->ifa_family = (unsigned char)family;
    ifa->ifa_prefixlen = (unsigned char)prefix;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = (unsigned)ifindex;
    /* IPv6: usable at once, no duplicate detection (both ends of a link are ours) */
    ifa->ifa_flags = family == AF_INET6 ? IFA_F_NODAD : 0;
    mnl_attr_put(nlh, IFA_LOCAL, alen, local);
    mnl_attr_put(nlh, IFA_ADDRESS, alen, local);
    if (talk(nl, nlh, NULL, NULL) < 0)
        return bh_fail_errno(err, "add address to link %d", ifindex);
    return 0;
}

int bh_nl_addr_add(struct bh_nl *nl, int ifindex, struct in_addr local, unsigned prefix, bh_error *err)
{
    return addr_add(nl, AF_INET, ifindex, &local, 4, prefix, err);
}

int bh_nl_addr_add6(struct bh_nl *nl, int ifindex, const struct in6_addr *local, unsigned prefix, bh_error *err)
{
    return addr_add(nl, AF_INET6, ifindex, local, 16, prefix, err);
}

static int route_add(struct bh_nl *nl, int family, const void *dst, size_t alen, unsigned prefix, const void *gw,
                     int ifindex, bh_error *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = start(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
    rtm->rtm_family = (unsigned char)family;
    rtm->rtm_dst_len = (unsigned char)prefix;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    rtm->rtm_type = RTN_UNICAST;
    if (prefix)
        mnl_attr_put(nlh, RTA_DST, alen, dst);
    if (gw) {
        mnl_attr_put(nlh, RTA_GATEWAY, alen, gw);
        rtm->rtm_flags |= RTNH_F_ONLINK;
    }
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)ifindex);
    if (talk(nl, nlh, NULL, NULL) < 0)
        return bh_fail_errno(err, "add route via link %d", ifindex);
    return 0;
}

int bh_nl_route_add(struct bh_nl *nl, struct in_addr dst, unsigned prefix, const struct in_addr *gw, int ifindex,
                    bh_error *err)
{
    return route_add(nl, AF_INET, &dst, 4, prefix, gw, ifindex, err);
}

int bh_nl_route_add6(struct bh_nl *nl, const struct in6_addr *dst, unsigned prefix, const struct in6_addr *gw,
                     int ifindex, bh_error *err)
{
    return route_add(nl, AF_INET6, dst, 16, prefix, gw, ifindex, err);
}

int bh_nl_neigh_add6(struct bh_nl *nl, int ifindex, const struct in6_addr *addr, const uint8_t mac[6], bh_error *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = start(buf, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
    struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof *nd);
    nd->ndm_family = AF_INET6;
    nd->ndm_ifindex = ifindex;
    nd->ndm_state = NUD_PERMANENT;
    mnl_attr_put(nlh, NDA_DST, 16, addr);
    mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
    if (talk(nl, nlh, NULL, NULL) < 0)
        return bh_fail_errno(err, "add neighbour on link %d", ifindex);
    return 0;
}

static int mac_cb(const struct nlmsghdr *nlh, void *data)
{
    if (nlh->nlmsg_type != RTM_NEWLINK)
        return MNL_CB_OK;
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(struct ifinfomsg))
    {
        if (mnl_attr_get_type(a) == IFLA_ADDRESS && mnl_attr_get_payload_len(a) == 6)
            memcpy(data, mnl_attr_get_payload(a), 6);
    }
    return MNL_CB_OK;
}

int bh_nl_link_mac(struct bh_nl *nl, int ifindex, uint8_t mac[6])
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = start(buf, RTM_GETLINK, 0);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = ifindex;
    memset(mac, 0, 6);
    if (talk(nl, nlh, mac_cb, mac) < 0)
        return -1;
    return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) ? 0 : -1;
}

int bh_mac_parse(const char *s, uint8_t mac[6])
{
    unsigned x[6];
    char tail;
    if (!s || strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &x[0], &x[1], &x[2], &x[3], &x[4], &x[5], &tail) != 6)
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)x[i];
    return 0;
}
