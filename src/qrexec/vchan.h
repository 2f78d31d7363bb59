/* The libvchan-socket transport (docs/qrexec.md): a plain AF_UNIX byte stream at
 *   <dir>/vchan.<server domid>.<client domid>.<port>.sock
 * For an `ns` qube, <dir> is the host's <runtime>/qubes/<name>/vchan, which the qube sees
 * at /run/qubes/vchan and nothing else: a qube can only reach sockets in its own dir.
 *
 * The host side treats every name in such a dir as qube-controlled: it never follows a
 * symlink there (connect goes through an O_PATH|O_NOFOLLOW fd) and binds with a umask
 * instead of chmod-by-path. */
#pragma once
#include "err.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BH_VCHAN_DEFAULT_DIR "/run/qubes/vchan"

/* $VCHAN_SOCKET_DIR or the default. */
const char *bh_vchan_dir(void);
/* This side's domid: $VCHAN_DOMAIN, else found from the agent control socket name in dir
 * (vchan.<me>.0.512.sock), else 0. */
int bh_vchan_own_domain(const char *dir);

int bh_vchan_path(char *out, size_t size, const char *dir, uint32_t server, uint32_t client,
                  uint32_t port);
/* Listening socket (removes a stale entry first); mode 0666 so that the peer (another
 * uid) can connect; only the dir's owner and the host see the dir. */
int bh_vchan_listen(const char *dir, uint32_t server, uint32_t client, uint32_t port, bh_error *err);
/* Accepts one connection within timeout_ms (-1: forever), then removes the name. */
int bh_vchan_accept(int lfd, const char *dir, uint32_t server, uint32_t client, uint32_t port,
                    int timeout_ms, bh_error *err);
/* The same, and the connecting process's UID (SO_PEERCRED) must be in [want_uid, want_uid
 * + uid_count) (uid_count 0 = 1; want_uid (uid_t)-1: anyone): a peer of another UID is
 * closed unused with a log line (the first; the rest are counted) and the name stays for
 * the right peer until timeout_ms (then ETIMEDOUT, or EACCES if only others came). */
int bh_vchan_accept_peer(int lfd, const char *dir, uint32_t server, uint32_t client, uint32_t port,
                         uid_t want_uid, uint32_t uid_count, int timeout_ms, bh_error *err);
/* Connects, retrying while the server is not there yet (as libvchan-socket does),
 * up to timeout_ms (-1: forever). Never follows a symlink at the final name. */
int bh_vchan_connect(const char *dir, uint32_t server, uint32_t client, uint32_t port,
                     int timeout_ms, bh_error *err);
/* The same, and the listener's UID (SO_PEERCRED) must be in [want_uid, want_uid +
 * uid_count) (uid_count 0 = 1; want_uid (uid_t)-1: anyone): a listener of another UID is
 * refused (closed, retried until timeout_ms, then EACCES). */
int bh_vchan_connect_peer(const char *dir, uint32_t server, uint32_t client, uint32_t port,
                          uid_t want_uid, uint32_t uid_count, int timeout_ms, bh_error *err);
/* Plain host-side Unix sockets (daemon sockets in host-only dirs). */
int bh_unix_listen(const char *path, unsigned mode, bh_error *err);
int bh_unix_connect(const char *path, bh_error *err);
/* Milliseconds on a monotonic clock. */
long long bh_now_ms(void);
