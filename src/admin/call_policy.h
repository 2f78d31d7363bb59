/* The qrexec policy as bulkheadd reads it to authorise what a qube's call identity asks
 * for (call_auth.c). Kept apart from model.h: the policy engine has its own view of a
 * qube (sysinfo.h), filled here from the text internal.GetSystemInfo answers. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stddef.h>

struct bh_call_policy;

/* policy_dir as it is now (loaded again only when it changed since the last request:
 * bh_policy_cache_get) and the system-info text. NULL with *err on failure (then
 * nothing is authorised). */
struct bh_call_policy *bh_call_policy_open(const char *policy_dir, const char *sysinfo_text, bh_error *err);
void bh_call_policy_close(struct bh_call_policy *p);

/* Whether `source` calling "SERVICE[+ARG]" on `requested` (as the caller named it) may
 * end at `actual`: the policy allows it there, or asks with `actual` among the choices
 * (a person may have chosen it; bulkheadd cannot know). actual NULL: any target. A
 * disposable is "@dispvm:TEMPLATE". */
bool bh_call_policy_reaches(const struct bh_call_policy *p, const char *source, const char *requested,
                            const char *service_and_arg, const char *actual);
/* The same; when it does, *user gets the rule's user= ("DEFAULT" without one: the
 * target's default user), as the call's command line names it, and *autostart (when
 * not NULL) the rule's autostart= (a target it may not start is not started for it). */
bool bh_call_policy_reaches_as(const struct bh_call_policy *p, const char *source, const char *requested,
                               const char *service_and_arg, const char *actual, char *user, size_t user_size,
                               bool *autostart);
/* Whether the policy allows (not asks) it: admin.vm.List's per-qube filter, as Qubes'
 * admin extension, which does not count an ask as allow. */
bool bh_call_policy_allows(const struct bh_call_policy *p, const char *source, const char *target,
                           const char *service_and_arg);
