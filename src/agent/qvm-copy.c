/* qvm-copy FILE...              copy to a qube chosen by policy (target @default)
 * qvm-move FILE...              the same, then remove the files once the receiver confirmed
 * qvm-copy-to-vm QUBE FILE...   copy to a named qube (policy still decides)
 * qvm-move-to-vm QUBE FILE...
 * Inside a qube: qrexec-client-vm TARGET qubes.Filecopy qfile-agent FILE...
 * In dom0 (no agent socket): qrexec-client to the qube's daemon, qfile-agent locally.
 * As Qubes' qvm-copy: when a name to send is one the receiver refuses by default
 * (characters unsafe to display), the call is qubes.Filecopy+allow-all-names, which the
 * receiver's policy must allow; otherwise plain qubes.Filecopy. */
#include "admin_client.h"
#include "cleanup.h"
#include "qrexec/client.h"
#include "qrexec/filecopy.h"
#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Finds a helper next to this executable (build tree, or one install dir), else fallback. */
static const char *helper(const char *name, const char *fallback)
{
    static char buf[2][PATH_MAX];
    static int k;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *b = buf[k++ & 1];
        snprintf(b, PATH_MAX, "%s/%s", dirname(self), name);
        if (access(b, X_OK) == 0)
            return b;
    }
    return fallback;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)f;
    return (flag == FTW_DP ? rmdir(p) : unlink(p)) < 0 ? -1 : 0;
}

/* nftw walk: does any name, as the receiver will see it, need --allow-all-names? */
static size_t top_skip; /* bytes of the path before the sent top-level name */
static bool unsafe_names;
static int scan_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    const char *name = p + top_skip;
    if (bh_fc_name_check_flags(name, 0) == -EILSEQ && bh_fc_name_check_flags(name, BH_FC_ALLOW_UNSAFE_CHARACTERS) > 0) {
        unsafe_names = true;
        return 1; /* stop: one is enough */
    }
    return 0;
}

static bool needs_all_names(char **files, int n)
{
    for (int k = 0; k < n && !unsafe_names; k++) {
        char copy[PATH_MAX];
        snprintf(copy, sizeof copy, "%s", files[k]);
        size_t len = strlen(copy);
        while (len > 1 && copy[len - 1] == '/')
            copy[--len] = '\0'; /* as Qubes: trailing slashes are stripped */
        const char *slash = strrchr(copy, '/');
        top_skip = slash && slash[1] ? (size_t)(slash + 1 - copy) : 0;
        nftw(copy, scan_one, 16, FTW_PHYS);
    }
    return unsafe_names;
}

int main(int argc, char **argv)
{
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    bool move = strstr(prog, "move") != NULL;
    bool to_vm = strstr(prog, "to-vm") != NULL;
    int first = 1;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
        argc = 0;
    const char *target = "@default";
    if (to_vm) {
        if (argc < 3) {
            fprintf(stderr, "usage: %s QUBE FILE...\n", prog);
            return 2;
        }
        target = argv[1];
        first = 2;
    } else if (argc < 2) {
        fprintf(stderr, "usage: %s FILE...\n", prog);
        return 2;
    }
    int nfiles = argc - first;
    const char *agent = helper("qfile-agent", "/usr/lib/bulkhead/qfile-agent");
    const char *sock = getenv("QREXEC_AGENT_SOCKET");
    bool in_qube = (sock && *sock) || access("/run/qubes/qrexec-agent", F_OK) == 0;
    const char *service = needs_all_names(argv + first, nfiles) ? "qubes.Filecopy+allow-all-names" : "qubes.Filecopy";
    int code;
    if (in_qube) {
        _cleanup_free_ char **av = calloc((size_t)nfiles + 6, sizeof *av);
        int i = 0;
        av[i++] = (char *)"qrexec-client-vm";
        av[i++] = (char *)target;
        av[i++] = (char *)service;
        av[i++] = (char *)agent;
        for (int k = first; k < argc; k++)
            av[i++] = argv[k];
        av[i] = NULL;
        pid_t pid = fork();
        if (pid == 0) {
            const char *qcv = helper("qrexec-client-vm", "qrexec-client-vm");
            execvp(qcv, av);
            perror("qrexec-client-vm");
            _exit(125);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) != pid)
            return 125;
        code = WIFEXITED(st) ? WEXITSTATUS(st) : 125;
    } else {
        if (!to_vm) {
            fprintf(stderr, "%s: in dom0, use qvm-copy-to-vm QUBE FILE...\n", prog);
            return 2;
        }
        _cleanup_free_ char **av = calloc((size_t)nfiles + 2, sizeof *av);
        av[0] = (char *)agent;
        for (int k = first; k < argc; k++)
            av[k - first + 1] = argv[k];
        /* As Qubes' dom0 qvm-copy-to-vm (qvm-run --service): a halted qube is started
         * first, through bulkheadd. Without a reachable bulkheadd the call is tried as is. */
        {
            _cleanup_reply_ struct bh_admin_reply rep = { 0 };
            bh_error aerr = { 0 };
            if (bh_admin_call("admin.vm.Start", "", target, "", 0, &rep, &aerr) == 0 && !rep.ok) {
                fprintf(stderr, "%s: cannot start %s: %s\n", prog, target, rep.exc_msg ? rep.exc_msg : "?");
                return 1;
            }
        }
        char cmdline[128];
        snprintf(cmdline, sizeof cmdline, "DEFAULT:QUBESRPC %s dom0", service);
        struct bh_qx_call c = { .qube = target, .cmdline = cmdline,
                                .in_fd = 0, .out_fd = 1, .err_fd = 2, .timeout_s = 30, .local_argv = av,
                                .filter_err = isatty(2) };
        code = bh_qx_call_run(&c);
    }
    if (code == 126)
        fprintf(stderr, "%s: refused by policy\n", prog);
    if (code != 0)
        return code;
    if (move)
        for (int k = first; k < argc; k++)
            if (nftw(argv[k], rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
                fprintf(stderr, "%s: removing %s: %s\n", prog, argv[k], strerror(errno));
    return 0;
}
