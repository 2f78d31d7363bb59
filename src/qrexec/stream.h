/* The data stream of one qrexec call (docs/qrexec.md): after both ends' HELLO, the
 * requesting side sends MSG_DATA_STDIN chunks (length 0 = EOF); the side running the
 * service sends MSG_DATA_STDOUT / STDERR chunks, their EOFs, then MSG_DATA_EXIT_CODE.
 * Chunks are at most 64 KiB. Every fd is pumped without blocking, so that neither end
 * can wedge the other by not reading. */
#pragma once
#include "buf.h"
#include "err.h"
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

struct bh_qx_stream {
    int sock;        /* the data connection (HELLO already exchanged) */
    bool is_service; /* true: we run the service */
    /* service: in_fd = child's stdin, out_fd = child's stdout, err_fd = child's stderr.
     * requester: in_fd = where remote stdout goes, out_fd = what we send as stdin,
     * err_fd = where remote stderr goes. -1 = none. The stream takes ownership. */
    int in_fd, out_fd, err_fd;
    pid_t child;     /* service: the process whose exit code is sent; -1 none */
    int fixed_exit;  /* service without child: exit code to send (JUST_EXEC: 0) */
    /* service whose process another (privileged) process waits for: with exit_from_fd,
     * its exit code arrives on exit_fd as 4 bytes (native int); EOF without them = 125 */
    bool exit_from_fd;
    int exit_fd;
    bool filter_out, filter_err; /* requester: replace control characters (tty safety) */
    /* plain reads only, no FIONREAD/splice from local pipes: for a pump under a seccomp
     * filter without ioctl (qrexec-daemon's unprivileged side) */
    bool no_splice;
};

/* Runs the stream to its end. Returns the exit code of the call: the service's as sent
 * by the other end (requester), or the child's (service); 125 on a broken stream. */
int bh_qx_stream_run(struct bh_qx_stream *s, bh_error *err);

/* The receiving half of a data stream without any I/O, so that the pump above and the
 * fuzz harness run the same code: complete messages in, payload out. */
struct bh_qx_rx {
    bool is_service;
    bool filter_out, filter_err; /* requester: as in bh_qx_stream */
    bool in_open;      /* someone takes our input (in_fd): its payload is queued, else dropped */
    bool in_eof;       /* the EOF of our input arrived */
    bool have_exit;    /* requester: the exit code arrived; nothing is parsed after it */
    int32_t exit_code;
    bh_buf *inq;       /* where our input's payload is queued */
    /* requester: the other end's stderr (filtered if asked); NULL drops it */
    void (*on_stderr)(void *ctx, const char *p, size_t n);
    void *ctx;
    /* optional: offered our input's payload first while inq is empty, so that bulk data
     * goes straight to in_fd without a copy into inq; returns how much it took (what it
     * did not take is queued); NULL queues everything */
    size_t (*direct_in)(void *ctx, const char *p, size_t n);
};
/* Handles the complete messages at the start of rq and consumes them; stops at a partial
 * message, after the exit code, or while inq holds inq_high bytes or more (back-pressure).
 * Returns 0, or -1 with err on anything the protocol does not allow. */
int bh_qx_rx_parse(struct bh_qx_rx *rx, bh_buf *rq, size_t inq_high, bh_error *err);

/* Qubes' rule for showing a qube's output on a terminal: everything but printable ASCII,
 * tab, newline, carriage return, backspace and bell becomes '_'. */
void bh_qx_filter(char *p, size_t n);
/* Exit code of a wait status the way shells report it. */
int bh_wait_status_code(int status);
