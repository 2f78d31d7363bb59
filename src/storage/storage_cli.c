/* bulkhead-storage: a thin front end over the storage library, for tests, benches and
 * the administrator's repairs. The daemon links the library directly.
 *   bulkhead-storage --root DIR [--pool P] [qube options] COMMAND ARGS
 *   qube options: --class C --template T --dispvm-template D --revisions N --private-size S
 *   commands: create NAME | remove NAME | clone SRC DST | info NAME VOL | resize NAME VOL SIZE
 *             snapshots NAME VOL | revert NAME VOL [REV] | prepare NAME | stopped NAME
 *             ensure-host | pool-info | volumes */
#include "storage.h"
#include "log.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr, "usage: bulkhead-storage --root DIR [--pool P] [--class C] [--template T]\n"
                    "         [--dispvm-template D] [--revisions N] [--private-size SIZE] COMMAND ARGS\n"
                    "commands: create NAME, remove NAME, clone SRC DST, info NAME VOL,\n"
                    "          resize NAME VOL SIZE, snapshots NAME VOL, revert NAME VOL [REV],\n"
                    "          prepare NAME, stopped NAME, ensure-host, pool-info, volumes\n");
    exit(2);
}

static int need(int argc, int have, int want)
{
    if (have < want || have > argc)
        usage();
    return 0;
}

int main(int argc, char **argv)
{
    bh_log_init("bulkhead-storage");
    const char *root = NULL, *pool = "default";
    struct bh_storage_qube q = { .klass = "AppVM", .revisions_to_keep = 0 };
    static const struct option opts[] = {
        { "root", required_argument, NULL, 'r' },       { "pool", required_argument, NULL, 'p' },
        { "class", required_argument, NULL, 'c' },      { "template", required_argument, NULL, 't' },
        { "dispvm-template", required_argument, NULL, 'd' }, { "revisions", required_argument, NULL, 'n' },
        { "private-size", required_argument, NULL, 's' }, { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'r': root = optarg; break;
        case 'p': pool = optarg; break;
        case 'c': q.klass = optarg; break;
        case 't': q.template_name = optarg; break;
        case 'd': q.dispvm_template = optarg; break;
        case 'n': q.revisions_to_keep = atoi(optarg); break;
        case 's':
            if (bh_size_parse(optarg, &q.private_size) < 0) {
                fprintf(stderr, "bulkhead-storage: bad size %s\n", optarg);
                return 2;
            }
            break;
        default: usage();
        }
    }
    if (!root || optind >= argc)
        usage();
    const char *cmd = argv[optind];
    char **a = argv + optind + 1;
    int na = argc - optind - 1;
    if (!strcmp(cmd, "volumes")) {
        for (int i = 0; bh_volume_names[i]; i++)
            printf("%s\n", bh_volume_names[i]);
        return 0;
    }
    bh_error err = { 0 };
    struct bh_pool *p = bh_pool_open(root, pool, &err);
    if (!p) {
        fprintf(stderr, "bulkhead-storage: %s\n", err.msg);
        return 1;
    }
    int r = -1;
    if (!strcmp(cmd, "create")) {
        need(argc, na, 1);
        q.name = a[0];
        r = bh_volumes_create(p, &q, &err);
    } else if (!strcmp(cmd, "remove")) {
        need(argc, na, 1);
        q.name = a[0];
        r = bh_volumes_remove(p, &q, &err);
    } else if (!strcmp(cmd, "clone")) {
        need(argc, na, 2);
        struct bh_storage_qube src = q, dst = q;
        src.name = a[0];
        dst.name = a[1];
        r = bh_volumes_clone(p, &src, &dst, &err);
    } else if (!strcmp(cmd, "info")) {
        need(argc, na, 2);
        q.name = a[0];
        struct bh_volume_info info;
        char buf[2048];
        r = bh_volume_info(p, &q, a[1], &info, &err);
        if (r == 0 && bh_volume_info_format(&info, buf, sizeof buf) > 0)
            fputs(buf, stdout);
    } else if (!strcmp(cmd, "resize")) {
        need(argc, na, 3);
        q.name = a[0];
        uint64_t size;
        if (bh_size_parse(a[2], &size) < 0) {
            fprintf(stderr, "bulkhead-storage: bad size %s\n", a[2]);
            r = -1;
            err.msg[0] = '\0';
        } else {
            r = bh_volume_resize(p, &q, a[1], size, &err);
        }
    } else if (!strcmp(cmd, "snapshots")) {
        need(argc, na, 2);
        q.name = a[0];
        char *out = NULL;
        r = bh_volume_list_snapshots(p, &q, a[1], &out, &err);
        if (r == 0)
            fputs(out, stdout);
        free(out);
    } else if (!strcmp(cmd, "revert")) {
        need(argc, na, 2);
        q.name = a[0];
        r = bh_volume_revert(p, &q, a[1], na > 2 ? a[2] : NULL, &err);
    } else if (!strcmp(cmd, "prepare")) {
        need(argc, na, 1);
        q.name = a[0];
        struct bh_volume_layout l;
        r = bh_volumes_prepare(p, &q, &l, &err);
        if (r == 0) {
            printf("root_lower=%s\nroot_rw=%s\nroot_throwaway=%s\nprivate_img=%s\nprivate_dir=%s\n"
                   "volatile_bytes=%llu\nhost_usr=%s\n",
                   l.root_lower ? l.root_lower : "", l.root_rw ? l.root_rw : "", l.root_throwaway ? "True" : "False",
                   l.private_img ? l.private_img : "", l.private_dir ? l.private_dir : "",
                   (unsigned long long)l.volatile_bytes, l.host_usr ? l.host_usr : "");
            bh_volume_layout_free(&l);
        }
    } else if (!strcmp(cmd, "stopped")) {
        need(argc, na, 1);
        q.name = a[0];
        r = bh_volumes_stopped(p, &q, &err);
    } else if (!strcmp(cmd, "pool-info")) {
        char buf[1024];
        r = bh_pool_info_format(p, buf, sizeof buf) < 0 ? -1 : 0;
        if (r == 0)
            fputs(buf, stdout);
    } else if (!strcmp(cmd, "ensure-host")) {
        bool created;
        r = bh_template_ensure_host(p, &created, &err);
        if (r == 0)
            printf("%s\n", created ? "created" : "exists");
    } else {
        bh_pool_close(p);
        usage();
    }
    bh_pool_close(p);
    if (r < 0) {
        if (err.msg[0])
            fprintf(stderr, "bulkhead-storage: %s\n", err.msg);
        return 1;
    }
    return 0;
}
