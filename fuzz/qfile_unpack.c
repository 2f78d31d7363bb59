/* libFuzzer: the file-copy unpacker on a real scratch directory. Invariant: whatever the
 * stream, nothing appears outside the scratch dir (checked through a sibling canary dir
 * that the stream would have to reach with .. or a symlink). */
#include "filecopy.h"
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mem { const uint8_t *p; size_t n; };
static ssize_t mread(void *ctx, void *buf, size_t n)
{
    struct mem *m = ctx;
    if (n > m->n)
        n = m->n;
    memcpy(buf, m->p, n);
    m->p += n, m->n -= n;
    return (ssize_t)n;
}
static int rm(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)w;
    return f == FTW_DP ? rmdir(p) : unlink(p);
}
static char root[64], in[96], canary[96];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0]) {
        snprintf(root, sizeof root, "/tmp/fuzz-qfile-%d", (int)getpid());
        snprintf(in, sizeof in, "%s/in", root);
        snprintf(canary, sizeof canary, "%s/canary", root);
        mkdir(root, 0700);
        mkdir(canary, 0700);
    }
    mkdir(in, 0700);
    int dfd = open(in, O_RDONLY | O_DIRECTORY);
    struct mem m = { data, size };
    struct bh_fc_reader r = { mread, &m };
    struct bh_fc_limits lim = { .max_files = 64, .max_bytes = 1 << 20 };
    static struct bh_fc_result res;
    bh_fc_unpack(&r, dfd, &lim, &res);
    close(dfd);
    nftw(in, rm, 16, FTW_DEPTH | FTW_PHYS);
    /* anything in root besides in/ and canary/, or in canary/, is an escape */
    DIR *d = opendir(root);
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "in") &&
            strcmp(de->d_name, "canary"))
            abort();
    closedir(d);
    d = opendir(canary);
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            abort();
    closedir(d);
    return 0;
}
