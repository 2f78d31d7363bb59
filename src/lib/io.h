/* Small I/O helpers: full reads/writes that retry on EINTR, fd flags, fd passing. */
#pragma once
#include <stddef.h>
#include <sys/types.h>

ssize_t bh_read_all(int fd, void *buf, size_t n);   /* < n only at EOF; -1 on error */
int bh_write_all(int fd, const void *buf, size_t n); /* 0 or -1 */
int bh_set_nonblock(int fd, int on);
int bh_set_cloexec(int fd, int on);
/* Sends/receives one fd with one byte of data over a Unix socket. */
int bh_send_fd(int sock, int fd);
/* Sends n fds (1..BH_SEND_FDS_MAX) in one message whose one byte of data is tag. */
#define BH_SEND_FDS_MAX 4
int bh_send_fds(int sock, char tag, const int *fds, size_t n);
int bh_recv_fd(int sock);
/* One recvmsg of up to len bytes; an fd that came with them (SCM_RIGHTS, close-on-exec)
 * replaces *fd_out (closing the old one). Retries on EINTR. */
ssize_t bh_recv_with_fd(int sock, void *buf, size_t len, int *fd_out);
/* Waits up to ms for the process behind pidfd to end (poll, retried on EINTR): 1 it
 * ended, 0 not yet, -1 error. */
int bh_pidfd_wait(int pidfd, int ms);
/* One read of up to size - 1 bytes of a small file (a /proc entry) into buf, then a NUL:
 * for callers that read often or must not allocate. The length read, or -1. */
ssize_t bh_read_small(const char *path, char *buf, size_t size);
/* Reads a whole small file (at most limit bytes) into a NUL-terminated malloc'd string. */
char *bh_read_file(const char *path, size_t limit, size_t *len_out);
/* Writes a file atomically: temp file in the same dir, fsync, rename, fsync dir. */
int bh_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* The same without the fsyncs, for runtime files (pid files under /run): readers never
 * see a half-written file, and nothing there has to survive a power loss. */
int bh_write_runtime_file(const char *path, const void *data, size_t len, unsigned mode);
/* mkdir -p; existing directories are fine. */
int bh_mkdir_p(const char *path, unsigned mode);
