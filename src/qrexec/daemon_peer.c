#include "daemon_peer.h"
#include "cleanup.h"
#include "io.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int bh_qx_daemon_peer(int fd, struct bh_qx_daemon_peer *out)
{
    struct ucred uc;
    socklen_t ul = sizeof uc;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) < 0 || uc.uid != 0 || uc.pid <= 1)
        return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)uc.pid);
    _cleanup_free_ char *st = bh_read_file(path, 16384, NULL);
    const char *u = st ? strstr(st, "\nUid:") : NULL;
    if (!u || strtoul(u + 5, NULL, 10) != 0) /* real uid root: no qube process can be */
        return -1;
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)uc.pid);
    size_t len = 0;
    _cleanup_free_ char *cmd = bh_read_file(path, 8192, &len);
    if (!cmd)
        return -1;
    const char *name = NULL, *domid = NULL, *auid = NULL;
    for (size_t i = 0; i < len; i += strlen(cmd + i) + 1) {
        size_t next = i + strlen(cmd + i) + 1;
        if (next >= len)
            break;
        if (!strcmp(cmd + i, "--name"))
            name = cmd + next;
        else if (!strcmp(cmd + i, "--domid"))
            domid = cmd + next;
        else if (!strcmp(cmd + i, "--agent-uid"))
            auid = cmd + next;
    }
    if (!name || !domid || strlen(name) >= sizeof out->name)
        return -1;
    char *end;
    unsigned long q = strtoul(domid, &end, 10);
    if (!*domid || *end || q > UINT32_MAX)
        return -1;
    unsigned long a = (unsigned long)-1;
    if (auid) {
        a = strtoul(auid, &end, 10);
        if (!*auid || *end || a >= (uid_t)-1)
            return -1;
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    out->qid = (uint32_t)q;
    out->agent_uid = auid ? (uid_t)a : (uid_t)-1;
    return 0;
}
