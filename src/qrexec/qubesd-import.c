/* qubesd-import SOURCE SERVICE+VOLUME DEST: Qubes' dom0 program
 * /etc/qubes-rpc/admin.vm.volume.Import (and ImportWithSize), which a qube's
 * admin.vm.volume.Import call to DEST runs once the qrexec policy has allowed it. The
 * data can be a whole volume, too much for an Admin API request, so it does not go
 * through bulkheadd: as Qubes' script,
 *   1. internal.vm.volume.ImportBegin (on DEST; payload: the size line of
 *      ImportWithSize, else none) answers "SIZE PATH" (bulkheadd checks the volume and
 *      that DEST is halted, and made PATH: an empty file of SIZE bytes);
 *   2. exactly SIZE bytes of stdin go to PATH (zero blocks skipped: sparse), then
 *      nothing more may come;
 *   3. internal.vm.volume.ImportEnd with "ok" or "fail\n<why>" (Qubes' texts), whose
 *      reply is the caller's.
 * qrexec-daemon runs it for those two services when dom0 has no service file of that
 * name. Its exit status: 0 when the import succeeded.
 * As Qubes' script, the internal calls name SOURCE as their source: run as SOURCE's call
 * identity, this program may speak for SOURCE only, and bulkheadd serves them only while
 * the qrexec policy allows SOURCE's admin.vm.volume.Import[WithSize] on DEST (as Qubes'
 * ImportBegin fires admin-permission:admin.vm.volume.Import on the source). */
#include "admin_client.h"
#include "cleanup.h"
#include "import_size.h"
#include "io.h"
#include "names.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CHUNK (128 * 1024)
#define MAX_REPLY 65536

/* The import file as bulkheadd opened it for us, or -1 (then its path is opened: as
 * root, e.g. run by hand). This program runs as a qrexec call's unprivileged identity,
 * which cannot reach the pool. */
static int import_fd = -1;

/* One raw Admin API request; the raw reply (malloc'd) in *out. */
static ssize_t query(const char *method, const char *src, const char *dest, const char *payload, size_t plen,
                     char **out)
{
    char req[1024];
    int n = snprintf(req, sizeof req, "%s %s name %s", method, src, dest);
    if (n < 0 || (size_t)n + 1 + plen > sizeof req)
        return -1;
    memcpy(req + n + 1, payload, plen);
    const char *path = bh_admin_socket_path();
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    strcpy(sa.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        bh_write_all(fd, req, (size_t)n + 1 + plen) < 0) {
        fprintf(stderr, "qubesd-import: bulkheadd: %s\n", strerror(errno));
        return -1;
    }
    shutdown(fd, SHUT_WR);
    char *buf = malloc(MAX_REPLY + 1);
    ssize_t r = buf ? bh_recv_with_fd(fd, buf, MAX_REPLY, &import_fd) : -1;
    if (r > 0) {
        ssize_t more = bh_read_all(fd, buf + r, MAX_REPLY - (size_t)r);
        r = more < 0 ? -1 : r + more;
    }
    if (r < 0) {
        free(buf);
        return -1;
    }
    buf[r] = '\0';
    *out = buf;
    return r;
}

static bool all_zero(const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* Step 2: returns "" on success, else Qubes' error text in why. */
static void copy_data(const char *path, uint64_t size, char *why, size_t whylen)
{
    why[0] = '\0';
    _cleanup_close_ int fd = import_fd >= 0 ? import_fd : open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    import_fd = -1;
    static char buf[CHUNK];
    uint64_t copied = 0;
    if (fd < 0) {
        snprintf(why, whylen, "error copying data");
        return;
    }
    while (copied < size) {
        size_t want = size - copied < CHUNK ? (size_t)(size - copied) : CHUNK;
        ssize_t r = bh_read_all(0, buf, want);
        if (r < 0) {
            snprintf(why, whylen, "error copying data");
            return;
        }
        if (r > 0 && all_zero(buf, (size_t)r)) {
            if (lseek(fd, r, SEEK_CUR) < 0) { /* the file has its size already: a hole */
                snprintf(why, whylen, "error copying data");
                return;
            }
        } else if (r > 0 && bh_write_all(fd, buf, (size_t)r) < 0) {
            snprintf(why, whylen, "error copying data");
            return;
        }
        copied += (uint64_t)r;
        if ((size_t)r < want)
            break; /* end of the stream */
    }
    if (copied != size) {
        snprintf(why, whylen, "not enough data (copied %" PRIu64 " bytes, expected %" PRIu64 " bytes)", copied,
                 size);
        return;
    }
    char extra;
    ssize_t e = read(0, &extra, 1);
    while (e < 0 && errno == EINTR)
        e = read(0, &extra, 1);
    if (e != 0) {
        snprintf(why, whylen, "too much data (expected %" PRIu64 " bytes)", size);
        return;
    }
    if (fdatasync(fd) < 0)
        snprintf(why, whylen, "error copying data");
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: qubesd-import SOURCE admin.vm.volume.Import[WithSize]+VOLUME DEST\n");
        return 2;
    }
    const char *src = argv[1], *service = argv[2], *dest = argv[3];
    static const char imp[] = "admin.vm.volume.Import+", imps[] = "admin.vm.volume.ImportWithSize+";
    bool with_size = !strncmp(service, imps, sizeof imps - 1);
    const char *vol = with_size ? service + sizeof imps - 1
                      : !strncmp(service, imp, sizeof imp - 1) ? service + sizeof imp - 1 : NULL;
    if (!vol || !bh_ident_valid(vol, 63) || !bh_qube_name_valid(src, NULL) || !bh_qube_name_valid(dest, NULL)) {
        fprintf(stderr, "qubesd-import: invalid arguments\n");
        return 2;
    }
    /* ImportWithSize: the first line of the stream is the size (Qubes' --single-line
     * --max-bytes=21), read byte by byte to leave the data where it is */
    char line[BH_IMPORT_SIZE_LINE_MAX + 1] = "";
    size_t llen = 0;
    if (with_size) {
        int st = 0;
        while (st == 0) {
            char ch;
            ssize_t r = read(0, &ch, 1);
            if (r < 0 && errno == EINTR)
                continue;
            st = r == 1 ? bh_import_size_line_feed(line, &llen, ch) : -1;
        }
        if (st < 0) {
            static const char exc[] = "2\0ProtocolError\0\0Invalid size line\0";
            (void)bh_write_all(1, exc, sizeof exc - 1);
            return 1;
        }
    }
    char method[128];
    snprintf(method, sizeof method, "internal.vm.volume.ImportBegin+%s", vol);
    _cleanup_free_ char *reply = NULL;
    ssize_t n = query(method, src, dest, line, llen, &reply);
    if (n < 0)
        return 125;
    uint64_t size;
    char path[4096];
    if (n < 2 || reply[0] != '0' || reply[1] != '\0' ||
        bh_import_begin_reply_parse(reply + 2, (size_t)n - 2, &size, path, sizeof path) < 0) {
        (void)bh_write_all(1, reply, (size_t)n); /* bulkheadd's refusal, as the script passes it on */
        return 1;
    }
    char why[160], status[200];
    copy_data(path, size, why, sizeof why);
    int slen = why[0] ? snprintf(status, sizeof status, "fail\n%s", why) : snprintf(status, sizeof status, "ok");
    snprintf(method, sizeof method, "internal.vm.volume.ImportEnd+%s", vol);
    _cleanup_free_ char *end = NULL;
    n = query(method, src, dest, status, (size_t)slen, &end);
    if (n < 0)
        return 125;
    (void)bh_write_all(1, end, (size_t)n);
    return n >= 2 && end[0] == '0' && end[1] == '\0' ? 0 : 1;
}
