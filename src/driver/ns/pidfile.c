/* init.pid: which host process is a qube's init, recorded so that a restarted daemon
 * can adopt the qube. A PID alone can be reused, so the record also carries the start
 * time and the user namespace inode, and adoption also checks the qube's cgroup. */
#include "ns.h"
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

int bh_proc_stat_parse(const char *s, uint64_t *out, char *state)
{
    /* comm may hold spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(s, ')');
    if (!p || p[1] != ' ')
        return -1;
    p += 2;
    if (state)
        *state = *p;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -1;
        p++;
    }
    if (*p < '0' || *p > '9')
        return -1;
    *out = strtoull(p, NULL, 10);
    return 0;
}

static int read_starttime(pid_t pid, uint64_t *out, char *state)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    _cleanup_free_ char *s = bh_read_file(path, 4096, NULL);
    if (!s)
        return -1;
    return bh_proc_stat_parse(s, out, state);
}

int bh_init_id_read_proc(pid_t pid, struct bh_init_id *id)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    if (stat(path, &st) < 0)
        return -1;
    id->pid = pid;
    id->userns_ino = st.st_ino;
    return read_starttime(pid, &id->starttime, NULL);
}

int bh_pidfile_write(const char *path, const struct bh_init_id *id, bh_error *err)
{
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%d %" PRIu64 " %" PRIu64 "\n", (int)id->pid, id->starttime, id->userns_ino);
    if (bh_write_runtime_file(path, buf, (size_t)n, 0600) < 0)
        return bh_fail_errno(err, "writing %s", path);
    return 0;
}

int bh_pidfile_read(const char *path, struct bh_init_id *id)
{
    _cleanup_free_ char *s = bh_read_file(path, 256, NULL);
    return s ? bh_pidfile_parse(s, id) : -1;
}

int bh_pidfile_parse(const char *s, struct bh_init_id *id)
{
    int pid;
    uint64_t st, ino;
    if (sscanf(s, "%d %" SCNu64 " %" SCNu64, &pid, &st, &ino) != 3 || pid <= 1)
        return -1;
    id->pid = pid;
    id->starttime = st;
    id->userns_ino = ino;
    return 0;
}

/* The recorded init, opened first (once the pidfd exists the PID cannot be reused) and
 * then checked to be the recorded process by its start time; its state letter in *state
 * (may be NULL). A pidfd, or -1. */
static int open_recorded(const struct bh_qube_spec *spec, struct bh_init_id *id, char *state)
{
    struct bh_ns_paths p;
    if (bh_ns_paths_fill(spec, &p, NULL) < 0 || bh_pidfile_read(p.pidfile, id) < 0)
        return -1;
    _cleanup_close_ int pfd = pidfd_open(id->pid, 0);
    uint64_t now = 0;
    if (pfd < 0 || read_starttime(id->pid, &now, state) < 0 || now != id->starttime)
        return -1;
    return steal_fd(&pfd);
}

int bh_init_open_verified(const struct bh_qube_spec *spec, struct bh_init_id *id)
{
    char state = 0;
    _cleanup_close_ int pfd = open_recorded(spec, id, &state);
    if (pfd < 0 || state == 'Z')
        return -1;
    /* still in the qube's user namespace and cgroup */
    struct bh_init_id now;
    if (bh_init_id_read_proc(id->pid, &now) < 0 || now.userns_ino != id->userns_ino)
        return -1;
    char tag[64];
    bh_cgroup_tag(spec, tag, sizeof tag);
    if (!bh_cgroup_ops()->contains(tag, spec->name, id->pid))
        return -1;
    return steal_fd(&pfd);
}

int bh_init_open_dying(const struct bh_qube_spec *spec, struct bh_init_id *id)
{
    return open_recorded(spec, id, NULL);
}
