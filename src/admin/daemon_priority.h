/* bulkheadd's own CPU weight (see daemon_priority.c). */
#pragma once

/* Raises the calling daemon's CPU weight (BULKHEAD_DAEMON_NICE, -20 to 0; default 0: unchanged) with
 * SCHED_RESET_ON_FORK, so that nothing it starts inherits it. Logs and goes on when
 * the host refuses: a daemon at nice 0 is slower under load, not less safe. */
void bh_daemon_priority_raise(void);
