/* Unit tests for the parts of the ns engine that need no privileges. */
#include "ns.h"
#include "../../../tests/unit/tap.h"
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* close_range as the engine calls it, failing as under a seccomp filter that does not
 * know the call (EPERM) while armed */
static bool fail_close_range;
int close_range(unsigned int first, unsigned int last, int flags)
{
    if (fail_close_range) {
        errno = EPERM;
        return -1;
    }
    return (int)syscall(SYS_close_range, first, last, flags);
}

int main(void)
{
    CHECK(!strcmp(bh_power_state_name(BH_STATE_RUNNING), "Running"));
    CHECK(!strcmp(bh_power_state_name(BH_STATE_HALTED), "Halted"));
    CHECK(!strcmp(bh_power_state_name((enum bh_power_state)99), "NA"));
    CHECK(bh_driver_get("ns") != NULL);
    CHECK(bh_driver_get("vm") != NULL && bh_driver_get("pvh") == bh_driver_get("vm") && bh_driver_get("hvm") == bh_driver_get("vm"));
    CHECK(bh_driver_get("xen") == NULL);
    CHECK(bh_driver_get(NULL) == NULL);

    struct bh_qube_spec a = { .name = "work", .runtime_dir = "/tmp/rt-a/qubes/work" };
    struct bh_qube_spec b = { .name = "work", .runtime_dir = "/tmp/rt-b/qubes/work" };
    char ta[64], tb[64], ta2[64];
    bh_cgroup_tag(&a, ta, sizeof ta);
    bh_cgroup_tag(&b, tb, sizeof tb);
    bh_cgroup_tag(&a, ta2, sizeof ta2);
    CHECK(strcmp(ta, tb) != 0);
    CHECK(!strcmp(ta, ta2));
    CHECK(!strncmp(ta, "bulkhead-", 9));

    char dir[] = "/tmp/bh-pidfile-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/init.pid", dir);
    struct bh_init_id id = { .pid = 1234, .starttime = 987654321, .userns_ino = 4026531837ull }, back;
    CHECK(bh_pidfile_write(path, &id, NULL) == 0);
    CHECK(bh_pidfile_read(path, &back) == 0);
    CHECK(back.pid == 1234 && back.starttime == 987654321 && back.userns_ino == 4026531837ull);
    /* hostile records are refused */
    const char *bad[] = { "", "1 2 3\n", "-5 1 1\n", "abc\n", "12 x 3\n" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        CHECK(bh_pidfile_read(path, &back) < 0);
    }
    unlink(path);
    rmdir(dir);

    /* passwd parsing of a qube's (hostile) /etc/passwd */
    uid_t u = 7;
    gid_t g = 7;
    char home[32];
    const char *pw = "root:x:0:0::/root:/bin/sh\nuser:x:1000:1001:U:/home/user:/bin/sh\n";
    CHECK(bh_passwd_find(pw, strlen(pw), "user", &u, &g, home, sizeof home) == 0);
    CHECK(u == 1000 && g == 1001 && !strcmp(home, "/home/user"));
    CHECK(bh_passwd_find(pw, strlen(pw), "nobody", &u, &g, home, sizeof home) < 0);
    CHECK(bh_passwd_find(pw, strlen(pw), "use", &u, &g, home, sizeof home) < 0);
    const char *hostile[] = {
        "user:x:4294967295:0::/h:/s\n", "user:x:-1:0::/h:/s\n", "user:x:70000:0::/h:/s\n",
        "user:x:1000:1000::relative:/s\n", "user:x:1000:1000::/this/home/path/is/much/too/long/for/the/buffer:/s\n",
        "user:x::1000::/h:/s\n", "user:x:1000\n", "user", "",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++)
        CHECK(bh_passwd_find(hostile[i], strlen(hostile[i]), "user", &u, &g, home, sizeof home) < 0);
    /* a NUL inside the text is data, not an end */
    const char nul[] = "x:x:1:1::/a:/s\nuser:x:5:5::/b\0c:/s\n";
    CHECK(bh_passwd_find(nul, sizeof nul - 1, "user", &u, &g, home, sizeof home) < 0);

    /* /proc/<pid>/stat: comm is chosen by the process */
    uint64_t stt = 0;
    char state = 0;
    CHECK(bh_proc_stat_parse("1 (a) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 4242 0 0", &stt, &state) == 0);
    CHECK(stt == 4242 && state == 'S');
    CHECK(bh_proc_stat_parse("1 (x) R) Z 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 99 0 0", &stt, &state) == 0);
    CHECK(stt == 99 && state == 'Z');
    CHECK(bh_proc_stat_parse("1 (a) S 0 1", &stt, &state) < 0);
    CHECK(bh_proc_stat_parse("no paren", &stt, &state) < 0);

    struct bh_ns_paths p;
    struct bh_qube_spec rel = { .name = "x", .runtime_dir = "relative/path" };
    CHECK(bh_ns_paths_fill(&rel, &p, NULL) < 0);
    CHECK(bh_ns_paths_fill(&a, &p, NULL) == 0);
    CHECK(!strcmp(p.pidfile, "/tmp/rt-a/qubes/work/init.pid"));
    /* the user namespace holder's close_range failing is named as such, not as the
     * namespace's failure (it fails before anything needing privileges) */
    bh_error ue = { 0 };
    fail_close_range = true;
    CHECK(bh_userns_create(1u << 24, 65536, &ue) < 0);
    fail_close_range = false;
    CHECK(strstr(ue.msg, "could not close the caller's fds (close_range: Operation not permitted)") != NULL);

    return tap_done();
}
