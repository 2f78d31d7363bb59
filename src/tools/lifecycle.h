/* Shared by the lifecycle tools (qvm-start, -shutdown, -kill, -pause, -unpause). */
#pragma once
#include "api.h"

/* QubesVMNotStartedError and its subclass QubesVMNotRunningError. */
bool exc_not_started(const struct reply *r);
/* Waits until every named qube is Halted, watching admin.Events for domain-shutdown
 * and re-checking CurrentState every second (so a daemon without events still works).
 * Returns false on timeout. */
bool wait_for_shutdown(const struct vmsel *vms, double timeout_s);
