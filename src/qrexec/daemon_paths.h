/* Where a qube's qrexec endpoints live on the host:
 *   <runtime>/qubes/<name>/qrexec.sock   the daemon's socket for dom0 clients (host only)
 *   <runtime>/qubes/<name>/vchan/        the qube's vchan dir (seen in the qube at
 *                                        /run/qubes/vchan)
 * <runtime> is --runtime, else $BULKHEAD_RUNTIME, else the directory of $BULKHEAD_SOCKET
 * (when it names qubesd.sock), else /run/bulkhead. */
#pragma once
#include <stddef.h>
const char *bh_qx_runtime(const char *opt);
int bh_qx_qube_path(char *out, size_t size, const char *runtime, const char *qube, const char *leaf);
