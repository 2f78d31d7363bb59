/* Replays the qfile_unpack fuzz inputs (seeds and minimised corpus, directories given as
 * arguments) through the real unpacker, on a real directory: the fuzz harness runs the
 * stream's checks against an in-memory tree, this runs the real sink (O_NOFOLLOW walks
 * from the directory fd) on the same inputs. After each stream: nothing exists beside
 * the incoming dir, the sibling canary dir is empty, and no entry of the incoming dir
 * resolves outside it. */
#include "../../tests/unit/tap.h"
#include "filecopy.h"
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64], in[96], canary[96];
static int escapes;

struct mem {
    const char *p;
    size_t n;
};

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

static int check_inside(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    char real[PATH_MAX];
    /* a dangling link resolves nowhere: harmless */
    if (realpath(p, real) && (strncmp(real, in, strlen(in)) || (real[strlen(in)] && real[strlen(in)] != '/'))) {
        fprintf(stderr, "# %s resolves outside the incoming dir: %s\n", p, real);
        escapes++;
    }
    return 0;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

static void replay(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    static char data[1 << 20];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    mkdir(in, 0700);
    int dfd = open(in, O_RDONLY | O_DIRECTORY);
    struct mem m = { data, n };
    struct bh_fc_reader r = { mread, &m };
    struct bh_fc_limits lim = { .max_files = 64, .max_bytes = 1 << 20 };
    static struct bh_fc_result res;
    bh_fc_unpack(&r, dfd, &lim, &res);
    close(dfd);
    int before = escapes;
    nftw(in, check_inside, 16, FTW_PHYS);
    CHECK(escapes == before);
    CHECK(count_entries(root) == 2 && count_entries(canary) == 0);
    nftw(in, rm, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
    snprintf(root, sizeof root, "/tmp/test-fc-corpus-%d", (int)getpid());
    snprintf(in, sizeof in, "%s/in", root);
    snprintf(canary, sizeof canary, "%s/canary", root);
    if (mkdir(root, 0700) < 0 || mkdir(canary, 0700) < 0)
        return 1;
    int inputs = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", argv[i], de->d_name);
            replay(p);
            inputs++;
        }
        if (d)
            closedir(d);
    }
    CHECK(inputs > 0);
    rmdir(canary);
    rmdir(root);
    return tap_done();
}
