/* Network namespaces made and entered by the host (bulkheadd), never by a qube.
 *
 * A qube's network namespace is created here, by host root, so it is owned by the
 * host's user namespace: the qube's processes use it (the engine joins it before the
 * qube's own user namespace), but the qube's root holds no capability over it and can
 * change none of its addresses, routes, sysctls or nftables rules. The namespace is
 * pinned by a bind mount on a file (as `ip netns` does), so it outlives a restart of
 * bulkheadd, and is gone with its links when the file is unmounted and the qube ends. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stddef.h>

/* Creates a new network namespace pinned at path (an existing pin there is replaced). */
int bh_netns_create(const char *path, bh_error *err);
/* Unpins path and removes the file; missing is fine. */
void bh_netns_remove(const char *path);
/* Is path a pinned network namespace? */
bool bh_netns_exists(const char *path);

/* Runs the calling thread in the namespace of nsfd until bh_netns_leave(saved). */
int bh_netns_enter(int nsfd, int *saved, bh_error *err);
void bh_netns_leave(int saved);
/* Opens "netns:NAME" style targets: /run/netns/NAME; "" or NULL: the caller's own. */
int bh_netns_open_named(const char *name, bh_error *err);

/* Writes a /proc/sys/net value (key relative to /proc/sys/net, e.g. "ipv4/ip_forward")
 * inside the namespace nsfd. old (may be NULL) receives the previous value. */
int bh_netns_sysctl(int nsfd, const char *key, const char *val, char *old, size_t oldn, bh_error *err);
