/* qvm-start: start qubes (admin.vm.Start). */
#include "cli.h"
#include "lifecycle.h"
#include "tools.h"
#include <string.h>

enum { O_SKIP = 1, O_ALL, O_EXCLUDE, O_DRIVE, O_HDDISK, O_CDROM, O_WINTOOLS };

static const struct cli_opt opts[] = {
    { "skip-if-running", 0, CLI_FLAG, O_SKIP },
    { "all", 0, CLI_FLAG, O_ALL },
    { "exclude", 0, CLI_ARG, O_EXCLUDE },
    { "drive", 0, CLI_ARG, O_DRIVE },
    { "hddisk", 0, CLI_ARG, O_HDDISK },
    { "cdrom", 0, CLI_ARG, O_CDROM },
    { "install-windows-tools", 0, CLI_FLAG, O_WINTOOLS },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-start",
    "[--verbose] [--quiet] [--help] [--all] [--exclude EXCLUDE] [--skip-if-running]\n"
    "                 [--drive DRIVE | --hddisk IMAGE | --cdrom IMAGE | --install-windows-tools]\n"
    "                 [VMNAME ...]",
    "\nstart a domain\n\n"
    "positional arguments:\n  VMNAME                one or more domain names\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n"
    "  --all                 perform the action on all qubes\n"
    "  --exclude EXCLUDE     exclude the qube from --all\n"
    "  --skip-if-running     Do not fail if the qube is already runnning\n"
    "  --drive DRIVE, --hddisk IMAGE, --cdrom IMAGE, --install-windows-tools\n"
    "                        attach a drive (not supported by Bulkhead: no block devices)\n",
};

int qvm_start_main(int argc, char **argv)
{
    cli_init(&tool, ERR_PRINT);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    struct strv exclude = { 0 };
    cli_get_all(&a, O_EXCLUDE, &exclude);
    struct vmsel sel;
    vm_args_multi(&a.pos, cli_has(&a, O_ALL), &exclude, &sel);
    bool drive = cli_has(&a, O_DRIVE) || cli_has(&a, O_HDDISK) || cli_has(&a, O_CDROM) ||
                 cli_has(&a, O_WINTOOLS);
    int rc = 0;
    for (size_t i = 0; i < sel.n; i++) {
        const struct vm *vm = sel.v[i];
        if (vm_is_running(vm)) {
            if (cli_has(&a, O_SKIP))
                continue;
            cli_print_error("domain %s is already running", vm->name);
            return 1;
        }
        if (drive) {
            cli_print_error("attaching drives is not supported: Bulkhead has no block devices");
            rc = 1;
            continue;
        }
        struct reply r;
        api_call(&r, vm->name, "admin.vm.Start", NULL, NULL, 0);
        if (!r.ok) {
            cli_print_error("%s", r.exc_msg);
            rc = 1;
        }
    }
    return rc;
}
