/* libFuzzer: the data-stream parser (stream.c) as a requester receiving arbitrary bytes
 * from the service side: framing, chunk limits, EOFs, exit codes, filtering. */
#include "stream.h"
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 200000)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    int big = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (size && write(sv[0], data, size) != (ssize_t)size)
        abort();
    shutdown(sv[0], SHUT_WR);
    struct bh_qx_stream s = { .sock = sv[1], .is_service = false, .in_fd = open("/dev/null", O_WRONLY | O_CLOEXEC),
                              .out_fd = -1, .err_fd = open("/dev/null", O_WRONLY | O_CLOEXEC), .child = -1,
                              .filter_out = size & 1, .filter_err = true };
    bh_error err = { 0 };
    bh_qx_stream_run(&s, &err);
    if (s.err_fd >= 0)
        close(s.err_fd);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
