/* qfile-unpacker: the receiving end of qubes.Filecopy, inside the target qube, as the user.
 * Unpacks stdin into ~/QubesIncoming/<source>/ (source = $QREXEC_REMOTE_DOMAIN, which the
 * agent got from the daemon, not from the sender), then answers on stdout. A hostile
 * stream can fail, but it cannot create anything outside that directory: see filecopy.c.
 * It refuses exactly the names Qubes' receiver refuses, and exits as Qubes' does: with
 * the status it sends (0, or the errno value: 84 EILSEQ for an unsafe or non-canonical
 * name, 67 ENOLINK for a symlink pointing out of its entry, 17 EEXIST for a name that
 * exists, 122 EDQUOT past a limit; 121 EREMOTEIO without the end marker; 118 (Qubes'
 * LEGAL_EOF 31415926) when the stream ends inside an entry); 1 when it cannot start.
 *   qfile-unpacker [--allow-all-names|--no-allow-all-names]
 *                  [--allow-unsafe-symlinks|--no-allow-unsafe-symlinks]
 *                  [--dir DIR] [--max-files N] [--max-bytes N]   (--dir: tests and tools)
 * --allow-all-names is the receiver's opt-in (qubes.Filecopy+allow-all-names, as policy
 * allows): names with any byte but '/' and NUL. */
#include "cleanup.h"
#include "io.h"
#include "names.h"
#include "qrexec/filecopy.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static ssize_t fd_read(void *ctx, void *buf, size_t n) { return read(*(int *)ctx, buf, n); }

/* Opens (creating) dirfd/name as a directory, never through a symlink. */
static int mkdir_open(int dirfd, const char *name)
{
    if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
        return -1;
    return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    /* Qubes' receiver's defaults: symlink targets may be non-canonical */
    struct bh_fc_limits lim = { .name_flags = BH_FC_ALLOW_NON_CANONICAL_SYMLINKS };
    static const struct option lo[] = { { "dir", required_argument, 0, 'd' },
                                        { "max-files", required_argument, 0, 'f' },
                                        { "max-bytes", required_argument, 0, 'b' },
                                        { "allow-all-names", no_argument, 0, 'A' },
                                        { "no-allow-all-names", no_argument, 0, 'a' },
                                        { "allow-unsafe-symlinks", no_argument, 0, 'S' },
                                        { "no-allow-unsafe-symlinks", no_argument, 0, 's' }, { 0, 0, 0, 0 } };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'd': dir = optarg; break;
        case 'f': lim.max_files = strtoull(optarg, NULL, 10); break;
        case 'b': lim.max_bytes = strtoull(optarg, NULL, 10); break;
        case 'A': lim.name_flags |= BH_FC_ALLOW_UNSAFE_CHARACTERS; break;
        case 'a': lim.name_flags &= ~(unsigned)BH_FC_ALLOW_UNSAFE_CHARACTERS; break;
        case 'S': lim.name_flags |= BH_FC_ALLOW_UNSAFE_SYMLINKS; break;
        case 's': lim.name_flags &= ~(unsigned)BH_FC_ALLOW_UNSAFE_SYMLINKS; break;
        default:
            fprintf(stderr, "usage: qfile-unpacker [--allow-all-names] [--allow-unsafe-symlinks] [--dir DIR]\n"
                            "                      [--max-files N] [--max-bytes N]\n");
            return 2;
        }
    }
    _cleanup_close_ int dfd = -1;
    if (dir) {
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } else {
        const char *src = getenv("QREXEC_REMOTE_DOMAIN");
        const char *home = getenv("HOME");
        if (!src || !bh_qube_name_valid(src, NULL)) {
            fprintf(stderr, "qfile-unpacker: invalid or missing QREXEC_REMOTE_DOMAIN\n");
            return 1;
        }
        if (!home || home[0] != '/')
            home = "/";
        _cleanup_close_ int h = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int qi = h < 0 ? -1 : mkdir_open(h, "QubesIncoming");
        dfd = qi < 0 ? -1 : mkdir_open(qi, src);
    }
    if (dfd < 0) {
        perror("qfile-unpacker: incoming directory");
        return 1;
    }
    int in = 0;
    struct bh_fc_reader r = { fd_read, &in };
    static struct bh_fc_result res;
    int rc = bh_fc_unpack(&r, dfd, &lim, &res);
    if (rc < 0)
        fprintf(stderr, "qfile-unpacker: %s (%s)\n", res.msg,
                res.error == BH_FC_LEGAL_EOF ? "stream ended early" : strerror(res.error));
    static uint8_t out[20 + BH_FC_MAX_NAME];
    size_t n = bh_fc_result_encode(&res, out);
    bh_write_all(1, out, n);
    /* as Qubes' receiver: exit(status) */
    return rc < 0 ? ((res.error & 0xff) ? res.error & 0xff : 1) : 0;
}
