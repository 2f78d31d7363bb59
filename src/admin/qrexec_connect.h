/* internal.qrexec.ConnectTarget (qrexec_connect.c): bulkheadd connects a qube's
 * authorised qrexec call to the target's daemon and passes the socket back. */
#pragma once
#include "api.h"

int bh_qrexec_connect_target(struct bh_call *c);
