/* Framing of GUI messages on a qube's vchan socket, with the memfds that travel as
 * SCM_RIGHTS beside WINDOW_DUMP.
 *
 * Reading never blocks (MSG_DONTWAIT) and never trusts untrusted_len beyond the checks
 * in proto.c: a header is checked as soon as its 12 bytes are in, before any body byte
 * is accepted, so the buffer never holds more than one maximal message. File
 * descriptors are accepted only as SCM_RIGHTS, at most BH_GUI_MAX_PENDING_FDS at a time,
 * and must be consumed by a WINDOW_DUMP: an fd left over once the buffer holds no
 * partial message is a protocol error.
 *
 * Writing queues: the daemon never blocks on an agent that stops reading; past
 * BH_GUI_MAX_OUTQ queued bytes, further messages are dropped (input to a dead qube). */
#pragma once
#include "proto.h"
#include <stdint.h>
#include <sys/types.h>

#define BH_GUI_MAX_PENDING_FDS 2
#define BH_GUI_MAX_OUTQ (1u << 20)
#define BH_GUI_RBUF (sizeof(struct bh_gui_hdr) + BH_GUI_MAX_CLIPBOARD)

struct bh_gui_chan {
    int fd;
    bool peer_is_agent; /* which header check applies to what we read */
    uint8_t rbuf[BH_GUI_RBUF];
    size_t rlen;
    size_t consumed; /* bytes of rbuf handed out by the last bh_gui_chan_next */
    int fds[BH_GUI_MAX_PENDING_FDS];
    int nfds;
    uint8_t *outq;
    size_t outlen, outcap;
    unsigned long long dropped;
};

void bh_gui_chan_init(struct bh_gui_chan *c, int fd, bool peer_is_agent);
/* Closes pending fds and frees the queue (not c->fd). */
void bh_gui_chan_release(struct bh_gui_chan *c);

/* Reads what is available. Returns bytes read (>0), 0 at EOF, -1 on error (err set),
 * -2 when nothing was available. */
ssize_t bh_gui_chan_fill(struct bh_gui_chan *c, bh_error *err);
/* The same from memory (the fuzz harness): appends up to n bytes as if read; returns
 * how many were taken (0 when the buffer is full, err set). */
size_t bh_gui_chan_feed(struct bh_gui_chan *c, const void *data, size_t n, bh_error *err);
/* Takes the next complete message: 1 (h, *body, *fd set; body valid until the next call;
 * *fd is the WINDOW_DUMP's memfd, owned by the caller, else -1), 0 when more bytes are
 * needed, -1 on a protocol error (err set; the channel is unusable). */
int bh_gui_chan_next(struct bh_gui_chan *c, struct bh_gui_hdr *h, const uint8_t **body, int *fd, bh_error *err);

/* Queues a message (with an fd to pass when passfd >= 0) and tries to flush.
 * Returns 0, or -1 when the peer is gone (err set). A message that does not fit the
 * queue is dropped and counted. */
int bh_gui_chan_send(struct bh_gui_chan *c, uint32_t type, uint32_t window, const void *body, size_t len,
                     int passfd, bh_error *err);
/* Flushes queued bytes without blocking: 0 (maybe some left), -1 on error. */
int bh_gui_chan_flush(struct bh_gui_chan *c, bh_error *err);
/* Sends the whole buffer, waiting for the socket when needed (handshake, agent side). */
int bh_gui_write_blocking(int fd, const void *buf, size_t len, int passfd, bh_error *err);
