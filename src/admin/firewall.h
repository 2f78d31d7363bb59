/* Qubes firewall rules (qvm-firewall format), one rule a line:
 *   action=accept|drop [dst4=A.B.C.D[/N]|dst6=ADDR[/N]|dsthost=NAME] [proto=tcp|udp|icmp]
 *   [dstports=N[-M]] [icmptype=N] [specialtarget=dns] [expire=TS|+SECONDS] [comment=TEXT...]
 * Parsed from API payloads (and, via admin.* over qrexec, from qubes), so strictly
 * bounded; the normalised form is what is stored and returned by firewall.Get. */
#pragma once
#include "err.h"
#include <stddef.h>
#include <time.h>

#define BH_FW_MAX_RULES 1024
#define BH_FW_MAX_LINE 1024

/* Parses one rule; writes the normalised rule (no newline) into out. now is used for
 * relative expire=+N. */
int bh_fw_rule_normalize(const char *line, size_t len, time_t now, char *out, size_t cap, bh_error *err);
/* Parses a whole rule set (lines; a trailing newline optional; empty lines refused);
 * returns a malloc'd normalised text, each rule followed by "\n". */
char *bh_fw_rules_normalize(const char *text, size_t len, time_t now, bh_error *err);
