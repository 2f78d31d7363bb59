/* bulkhead-ns: a test and debug front end for the `ns` engine.
 *
 *   bulkhead-ns [--runtime DIR] start NAME --uid-base N [volume/limit options]
 *   bulkhead-ns [--runtime DIR] exec NAME [--user U] -- CMD [ARG...]
 *   bulkhead-ns [--runtime DIR] {shutdown|kill|pause|unpause|state|adopt|reap|wait} NAME
 *   bulkhead-ns [--runtime DIR] kill-all
 *
 * The qube's runtime dir is DIR/qubes/NAME (DIR: --runtime, $BULKHEAD_RUNTIME, or
 * /run/bulkhead). The options fill a struct bh_qube_spec exactly as bulkheadd would. */
#include "host_ids.h"
#include "ns.h"
#include "log.h"
#include "names.h"
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void)
{
    fputs("usage: bulkhead-ns [--runtime DIR] COMMAND NAME [options] [-- CMD...]\n"
          "commands: start exec shutdown kill pause unpause state adopt reap wait; kill-all\n"
          "start options: --uid-base N --uid-count N --qid N --class C --memory MiB --maxmem MiB\n"
          "  --vcpus N --max-pids N --root-lower DIR --root-rw DIR --throwaway --private-img IMG\n"
          "  --host-usr DIR --volatile-bytes N --netns PATH --provides-network --user U --debug\n"
          "exec options: --user U;  wait options: --timeout SECONDS\n", stderr);
    exit(2);
}

static uint64_t num(const char *s)
{
    char *e;
    errno = 0;
    unsigned long long v = strtoull(s, &e, 0);
    if (errno || *e || !*s) {
        fprintf(stderr, "bulkhead-ns: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

/* Kills every qube with a runtime dir under <runtime>/qubes: test teardown, and what to
 * run when a daemon is gone for good (qubes outlive bulkheadd by design). */
static int kill_all(const char *runtime)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/qubes", runtime);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int ret = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!bh_qube_name_valid(de->d_name, NULL))
            continue;
        char rd[4096 + 256];
        snprintf(rd, sizeof rd, "%s/%s", dir, de->d_name);
        struct bh_qube_spec s = { .name = de->d_name, .runtime_dir = rd, .state_dir = rd };
        bh_error err = { 0 };
        char qemu_pid[4096 + 300];
        snprintf(qemu_pid, sizeof qemu_pid, "%s/qemu.pid", rd);
        const char *engine = access(qemu_pid, F_OK) == 0 ? "vm" : "ns"; /* a VM qube's QEMU */
        if (bh_driver_get(engine)->kill(&s, &err) < 0) {
            fprintf(stderr, "bulkhead-ns kill %s: %s\n", de->d_name, err.msg);
            ret = 1;
        }
    }
    closedir(d);
    return ret;
}

int main(int argc, char **argv)
{
    bh_log_init("bulkhead-ns");
    static struct option opts[] = {
        { "runtime", 1, 0, 'R' }, { "uid-base", 1, 0, 'u' }, { "uid-count", 1, 0, 'c' },
        { "qid", 1, 0, 'q' }, { "class", 1, 0, 'k' }, { "memory", 1, 0, 'm' }, { "maxmem", 1, 0, 'M' },
        { "vcpus", 1, 0, 'v' }, { "max-pids", 1, 0, 'p' }, { "root-lower", 1, 0, 'l' },
        { "root-rw", 1, 0, 'w' }, { "throwaway", 0, 0, 't' }, { "private-img", 1, 0, 'i' },
        { "host-usr", 1, 0, 'U' }, { "volatile-bytes", 1, 0, 'V' }, { "netns", 1, 0, 'n' },
        { "user", 1, 0, 'e' }, { "provides-network", 0, 0, 'N' }, { "all-qubes-mib", 1, 0, 'A' }, { "debug", 0, 0, 'd' }, { "timeout", 1, 0, 'T' }, { 0, 0, 0, 0 },
    };
    struct bh_qube_spec s = { .klass = "AppVM", .uid_count = 65536, .default_user = "user", .qid = 1 };
    const char *runtime = getenv("BULKHEAD_RUNTIME");
    const char *user = NULL;
    int timeout = 60;
    int c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'R': runtime = optarg; break;
        default: usage();
        }
    }
    if (argc - optind == 1 && !strcmp(argv[optind], "kill-all"))
        return kill_all(runtime ? runtime : "/run/bulkhead");
    if (argc - optind < 2)
        usage();
    const char *cmd = argv[optind], *name = argv[optind + 1];
    optind += 2;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'R': runtime = optarg; break;
        case 'u': s.uid_base = (uid_t)num(optarg); break;
        case 'c': s.uid_count = (uint32_t)num(optarg); break;
        case 'q': {
            /* its host IDs follow from it (host_ids.h): 0 is dom0's, and past the top
             * the procfs UID would wrap onto another qube's */
            uint64_t q = num(optarg);
            if (q < 1 || q > BH_QID_MAX) {
                fprintf(stderr, "bulkhead-ns: --qid %s: not a qid from 1 to %u\n", optarg, (unsigned)BH_QID_MAX);
                return 2;
            }
            s.qid = (uint32_t)q;
            break;
        }
        case 'k': s.klass = optarg; break;
        case 'm': s.memory_mib = num(optarg); break;
        case 'M': s.maxmem_mib = num(optarg); break;
        case 'v': s.vcpus = (uint32_t)num(optarg); break;
        case 'p': s.max_pids = (uint32_t)num(optarg); break;
        case 'l': s.vol.root_lower = optarg; break;
        case 'w': s.vol.root_rw = optarg; break;
        case 't': s.vol.root_throwaway = true; break;
        case 'i': s.vol.private_img = optarg; break;
        case 'U': s.vol.host_usr = optarg; break;
        case 'V': s.vol.volatile_bytes = num(optarg); break;
        case 'n': s.net.netns_path = optarg; break;
        case 'N': s.provides_network = true; break;
        case 'A': s.all_qubes_mib = num(optarg); break;
        case 'e': user = optarg; s.default_user = optarg; break;
        case 'd': s.debug = true; break;
        case 'T': timeout = (int)num(optarg); break;
        default: usage();
        }
    }
    const char *why;
    if (!bh_qube_name_valid(name, &why)) {
        fprintf(stderr, "bulkhead-ns: %s\n", why);
        return 2;
    }
    char rd[4096];
    snprintf(rd, sizeof rd, "%s/qubes/%s", runtime ? runtime : "/run/bulkhead", name);
    s.name = name;
    s.runtime_dir = rd;
    const struct bh_driver *d = bh_driver_get("ns");
    bh_error err = { 0 };
    int r = 0;
    if (!strcmp(cmd, "start")) {
        r = d->start(&s, &err);
    } else if (!strcmp(cmd, "exec")) {
        if (optind >= argc)
            usage();
        r = bh_ns_exec(&s, argv + optind, user, &err);
        if (r >= 0)
            return r;
    } else if (!strcmp(cmd, "shutdown")) {
        r = d->shutdown(&s, &err);
    } else if (!strcmp(cmd, "kill")) {
        r = d->kill(&s, &err);
    } else if (!strcmp(cmd, "pause")) {
        r = d->pause(&s, &err);
    } else if (!strcmp(cmd, "unpause")) {
        r = d->unpause(&s, &err);
    } else if (!strcmp(cmd, "state")) {
        struct bh_qube_stats st;
        enum bh_power_state ps = d->state(&s, &st);
        printf("%s mem=%llu cputime=%llu\n", bh_power_state_name(ps), (unsigned long long)st.mem_bytes,
               (unsigned long long)st.cputime_ns);
        return 0;
    } else if (!strcmp(cmd, "adopt")) {
        r = d->adopt(&s, &err);
        if (r >= 0) {
            puts(r ? "adopted" : "not running");
            return 0;
        }
    } else if (!strcmp(cmd, "reap") || !strcmp(cmd, "wait")) {
        if (!strcmp(cmd, "wait")) {
            int fd = d->watch_fd(&s);
            if (fd >= 0) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int pr = poll(&p, 1, timeout * 1000);
                close(fd);
                if (pr != 1) {
                    fprintf(stderr, "bulkhead-ns: %s still running\n", name);
                    return 1;
                }
            }
        }
        bool crashed = false;
        r = d->reap(&s, &crashed, &err);
        if (r >= 0) {
            puts(crashed ? "crashed" : "halted");
            return 0;
        }
    } else {
        usage();
    }
    if (r < 0) {
        fprintf(stderr, "bulkhead-ns %s %s: %s\n", cmd, name, err.msg);
        return 1;
    }
    return 0;
}
