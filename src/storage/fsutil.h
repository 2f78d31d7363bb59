/* Filesystem helpers for the file pool. Every path below a pool is walked one component
 * at a time with openat(O_NOFOLLOW), so a symlink planted inside a volume directory is
 * never followed. External tools (mkfs.ext4, resize2fs, cp, rm, du) get paths of the form
 * /proc/self/fd/N/NAME where N is a directory fd we opened that way and NAME one
 * validated component: the tool cannot be redirected by a symlink swap above NAME. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Opens dirfd/name as a directory without following a symlink at name. */
int bh_fs_open_dir(int dirfd, const char *name, bh_error *err);
/* mkdirat (an existing directory is fine) then bh_fs_open_dir. */
int bh_fs_mkdir_open(int dirfd, const char *name, mode_t mode, bh_error *err);
/* 1 if dirfd/name exists (any type, not followed), 0 if not, -1 on error. */
int bh_fs_exists(int dirfd, const char *name);
/* 1 if dirfd/name is a real directory (not a symlink). */
bool bh_fs_is_dir(int dirfd, const char *name);
int bh_fs_fsync_dir(int dirfd);
/* Writes dirfd/name atomically (temp + fsync + rename + fsync dir). */
int bh_fs_write_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode, bh_error *err);
/* The same without fsync: replaced in one step for readers, but with no claim to
 * survive a power loss (state that only means something while qubes run). */
int bh_fs_write_runtime_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode, bh_error *err);
/* Reads a small regular file (not a symlink) into a NUL-terminated malloc'd string with
 * trailing newlines stripped; NULL with errno set on failure. */
char *bh_fs_read_small_at(int dirfd, const char *name, size_t limit);
/* Copies a regular file's data from in to out: a reflink where the filesystem can,
 * otherwise only the data extents (holes stay holes). Sets out's size; fsyncs out. */
int bh_fs_copy_data(int in, int out, bh_error *err);
/* Copies the regular file sdir/sname to a new file ddir/dname (must not exist). */
int bh_fs_copy_file_at(int sdir, const char *sname, int ddir, const char *dname, mode_t mode, bh_error *err);
/* The same without fsync, for a copy that no crash may leave in use (a disposable's
 * private: copied afresh at every start, dropped at its end): its blocks may never
 * reach the disk at all. */
int bh_fs_copy_file_throwaway_at(int sdir, const char *sname, int ddir, const char *dname, mode_t mode,
                                 bh_error *err);
/* Copies the directory tree sdir/sname to a new ddir/dname (cp -a: owners, modes, xattrs,
 * hard links, symlinks as symlinks), then syncs the filesystem. */
int bh_fs_copy_tree_at(int sdir, const char *sname, int ddir, const char *dname, bh_error *err);
/* Removes dirfd/name and everything below it, never crossing into another mount and
 * never following symlinks. Missing is fine. */
int bh_fs_remove_tree_at(int dirfd, const char *name, bh_error *err);
/* Disk usage (allocated bytes) of dirfd/name, file or tree. */
int bh_fs_usage_at(int dirfd, const char *name, uint64_t *bytes, bh_error *err);
/* 1 if dirfd/name is the root of a mount (something is mounted there). */
int bh_fs_is_mountpoint(int dirfd, const char *name);
/* Runs argv (PATH = the system dirs, LC_ALL=C) with stdin from /dev/null; the fds in keep
 * (terminated by -1, may be NULL) stay open in the child for /proc/self/fd paths. stdout
 * goes to out_fd if >= 0, else it is captured with stderr; on a non-zero exit the tail of
 * that output goes into err. */
int bh_fs_run(const char *const argv[], const int *keep, int out_fd, bh_error *err);
/* Like bh_fs_run but returns the exit code (err holds the output's tail), -1 if the
 * program could not run or was killed. */
int bh_fs_run_code(const char *const argv[], const int *keep, int out_fd, bh_error *err);
/* execve()s argv[0] from /usr/sbin, /usr/bin, /sbin or /bin (never $PATH); returns
 * only on failure. */
void bh_fs_exec_system(const char *const argv[], char *const envp[]);
/* "/proc/self/fd/<fd>/<name>" into buf. */
int bh_fs_fd_path(char *buf, size_t n, int fd, const char *name);
