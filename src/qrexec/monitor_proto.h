/* The narrow channel between qrexec-daemon's unprivileged process (which reads the
 * qube's agent) and its root monitor, over a SOCK_SEQPACKET pair:
 *   unprivileged -> monitor: CALL {slot, dom0 port, ident, target, service}: the qube
 *       asked for a call; every field is checked again by the monitor (it trusts
 *       nothing the unprivileged side says) before it forks the call process;
 *   monitor -> unprivileged: STARTED {slot} + the call process's answer socket (fd),
 *       DONE {slot}: that call process ended (or could not start).
 * Nothing else crosses: the unprivileged side cannot name a path, a program or a qube
 * other than as the target a qube call may name anyway. */
#pragma once
#include "err.h"
#include "proto.h"
#include <stddef.h>
#include <stdint.h>

enum { BH_QX_MON_CALL = 1, BH_QX_MON_STARTED = 2, BH_QX_MON_DONE = 3 };

struct bh_qx_mon_msg { uint32_t op, slot; };

struct bh_qx_mon_call {
    uint32_t slot;
    int32_t dom0_port;             /* -1: none */
    char ident[BH_QX_IDENT_LEN];
    char target[BH_QX_TARGET_LEN];
    char *service;                 /* malloc'd, valid service+arg */
};

int bh_qx_mon_send_call(int fd, uint32_t slot, int32_t dom0_port, const char *ident, const char *target,
                        const char *service);
/* The check of one CALL message (the monitor's only parser of bytes from the
 * unprivileged side; fuzzed by fuzz/monitor_proto.c): 1 and *c, or -1 and err. */
int bh_qx_mon_parse_call(const void *msg, size_t n, uint32_t max_slot, int32_t port_lo, int32_t port_hi,
                         struct bh_qx_mon_call *c, bh_error *err);
/* Monitor side: 1 = a valid call in *c (free c->service), 0 = EOF, -1 = error or an
 * invalid message (err says why; the monitor logs it and goes on). Slots are < max_slot,
 * ports -1 or within [port_lo, port_hi). */
int bh_qx_mon_recv_call(int fd, uint32_t max_slot, int32_t port_lo, int32_t port_hi, struct bh_qx_mon_call *c,
                        bh_error *err);
/* Monitor -> unprivileged; pass_fd < 0: none. */
int bh_qx_mon_send(int fd, uint32_t op, uint32_t slot, int pass_fd);
/* Unprivileged side: 1 = message (and *fd if one came, else -1), 0 = EOF, -1 = error. */
int bh_qx_mon_recv(int fd, struct bh_qx_mon_msg *m, int *passed_fd);
