/* bulkheadd: the admin daemon (Qubes' qubesd). Owns the store, serves the Admin API on
 * a Unix socket, and runs qubes through their engine. */
#include "cleanup.h"
#include "daemon_priority.h"
#include "defaults.h"
#include "engine_glue.h"
#include "host_ids.h"
#include "io.h"
#include "lifecycle.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "net_glue.h"
#include "net/nft.h"
#include "policy_install.h"
#include "preload.h"
#include "qid_claim.h"
#include "stats.h"
#include "server.h"
#include "store.h"
#include "subid.h"
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: bulkheadd [--root DIR] [--runtime-dir DIR] [--no-default-qubes] [--no-autostart]\n"
               "                 [--uplink none|host|netns:NAME] [--qid-base N]\n"
               "  --root DIR          state: store, policy, pools (default /var/lib/bulkhead)\n"
               "  --runtime-dir DIR   sockets and runtime state (default /run/bulkhead)\n"
               "  --no-default-qubes  do not create the default qubes in a new store\n"
               "  --no-autostart      do not start autostart qubes (running ones are still adopted)\n"
               "  --uplink WHERE      where sys-net's traffic goes: none (default: offline), host (a veth\n"
               "                      to this host, masqueraded), netns:NAME (the namespace NAME plays the host)\n"
               "  --qid-base N        the first qid given to a new qube (default: $BULKHEAD_QID_BASE, else 1);\n"
               "                      qids held by another bulkheadd on this host, or whose host UIDs\n"
               "                      a live process has, are skipped\n");
}

/* A qid base: decimal, 1 to BH_QID_MAX. */
static bool parse_qid_base(const char *s, uint32_t *out)
{
    uid_t v;
    if (!bh_parse_host_uid(s, &v) || v < 1 || v > BH_QID_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int sigfd = -1;
static void on_signal(void *ctx, uint32_t ev)
{
    (void)ctx;
    (void)ev;
    struct signalfd_siginfo si;
    if (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si && (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)) {
        bh_info("signal %u: stopping (running qubes keep running)", si.ssi_signo);
        bh_loop_stop();
    }
}

/* What bulkheadd made in its runtime dir goes when it stops: the qubes' directory once
 * empty (a qube left running keeps its own there, which the next bulkheadd adopts), and
 * the runtime dir itself if this bulkheadd made it and nothing is left in it. */
static void remove_runtime_dirs(const char *runtime, bool made_runtime)
{
    char qubes[4200];
    snprintf(qubes, sizeof qubes, "%s/qubes", runtime);
    (void)rmdir(qubes);
    snprintf(qubes, sizeof qubes, "%s/engines", runtime); /* empty: no qube runs */
    (void)rmdir(qubes);
    if (made_runtime)
        (void)rmdir(runtime);
}

int main(int argc, char **argv)
{
    bh_log_init("bulkheadd");
    const char *root = "/var/lib/bulkhead", *runtime = "/run/bulkhead";
    bool defaults = true, autostart = true;
    const char *uplink = "none";
    const char *qid_base = getenv("BULKHEAD_QID_BASE");
    static const struct option opts[] = {
        { "root", required_argument, NULL, 'r' },
        { "runtime-dir", required_argument, NULL, 'R' },
        { "no-default-qubes", no_argument, NULL, 'n' },
        { "no-autostart", no_argument, NULL, 'A' },
        { "uplink", required_argument, NULL, 'u' },
        { "qid-base", required_argument, NULL, 'Q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'r': root = optarg; break;
        case 'R': runtime = optarg; break;
        case 'n': defaults = false; break;
        case 'A': autostart = false; break;
        case 'u': uplink = optarg; break;
        case 'Q': qid_base = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    uint32_t first_qid = 1;
    if (qid_base && *qid_base && !parse_qid_base(qid_base, &first_qid)) {
        bh_err("--qid-base / BULKHEAD_QID_BASE: '%s' is not a qid from 1 to %u", qid_base, (unsigned)BH_QID_MAX);
        return 2;
    }
    umask(022);
    bh_error idserr = { 0 };
    if (bh_subid_check("/etc/subuid", BH_HOST_IDS_FIRST, BH_HOST_IDS_END, &idserr) < 0 ||
        bh_subid_check("/etc/subgid", BH_HOST_IDS_FIRST, BH_HOST_IDS_END, &idserr) < 0) {
        bh_err("refusing to start: %s", idserr.msg);
        return 1;
    }
    struct stat rst;
    bool made_runtime = stat(runtime, &rst) < 0 && errno == ENOENT;
    if (bh_mkdir_p(root, 0700) < 0 || bh_mkdir_p(runtime, 0755) < 0) {
        bh_err("cannot create %s or %s: %s", root, runtime, strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    bh_daemon_priority_raise();
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    /* Forked now, while this process is small and holds nothing (nft_helper.c says why
     * nftables runs there). */
    bh_error herr = { 0 };
    if (bh_nft_helper_start(&herr) < 0)
        bh_warn("%s: running nftables in bulkheadd", herr.msg);

    chmod(runtime, 0755);
    bh_error err = { 0 };
    char path[4096];
    snprintf(path, sizeof path, "%s/qubes.db", root);
    struct bh_store *store = bh_store_open(path, &err);
    if (!store) {
        bh_err("%s", err.msg);
        return 1;
    }
    bool fresh = bh_store_is_new(store);
    struct bh_app app = { 0 };
    app.root_dir = realpath(root, NULL);
    app.runtime_dir = realpath(runtime, NULL);
    if (bh_loop_init() < 0) {
        bh_err("event loop: %s", strerror(errno));
        return 1;
    }
    if (bh_app_load(&app, store, &err) < 0) {
        bh_err("loading store: %s", err.msg);
        return 1;
    }
    /* Before anything acts on a qid (the boot's sweep of halted qubes' UIDs, the default
     * qubes): this daemon's qids are its own on this host (qid_claim.h). */
    app.qid_base = first_qid;
    int claims = bh_qid_claims_open(BH_QID_CLAIMS_PATH, &err);
    if (claims < 0 || bh_app_claim_qids(&app, claims, &err) < 0) {
        bh_err("refusing to start: %s", err.msg);
        return 1;
    }
    if (bh_policy_install_defaults(app.root_dir, &err) < 0)
        bh_warn("policy: %s; every qrexec call will be denied until %s/policy.d exists", err.msg, app.root_dir);
    if (bh_glue_init(&app, &err) < 0) {
        bh_err("storage: %s", err.msg);
        return 1;
    }
    if (bh_net_glue_init(&app, uplink, &err) < 0) {
        bh_err("network: %s", err.msg);
        return 1;
    }
    if (fresh && defaults && bh_defaults_create(&app, &err) < 0) {
        bh_err("%s", err.msg);
        return 1;
    }
    sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0 || bh_loop_add(sigfd, EPOLLIN, on_signal, NULL) < 0) {
        bh_err("signalfd: %s", strerror(errno));
        return 1;
    }
    if (bh_lifecycle_check_ids(&app, &err) < 0) {
        bh_err("refusing to start: %s", err.msg);
        return 1;
    }
    snprintf(path, sizeof path, "%s/qubesd.sock", app.runtime_dir);
    if (bh_server_start(&app, path, &err) < 0) {
        bh_err("%s", err.msg);
        return 1;
    }
    if (bh_glue_runtime_check(&app, &err) < 0)
        bh_warn("%s", err.msg);
    bh_lifecycle_boot(&app, autostart);
    bh_preload_init(&app);
    bh_stats_init(&app);
    bh_info("ready: %zu qubes, socket %s", app.nqubes, path);
    int rc = bh_loop_run();
    bh_net_glue_fini(&app);
    bh_nft_helper_stop(); /* after the last transaction (the network's teardown) */
    bh_server_stop();
    remove_runtime_dirs(app.runtime_dir, made_runtime);
    bh_app_free(&app);
    bh_store_close(store);
    return rc < 0 ? 1 : 0;
}
