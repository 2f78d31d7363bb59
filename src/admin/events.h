/* Event fan-out for admin.Events: the model emits, subscribers (connections) receive.
 * A subscriber with filter "" gets everything; otherwise only events whose subject is
 * that qube. Emission never blocks: a subscriber that cannot keep up is dropped by the
 * server (bounded output queue). */
#pragma once
#include <stdbool.h>

typedef void (*bh_event_fn)(void *ctx, const char *subject, const char *event, const char *const *kv);

int bh_events_subscribe(const char *filter, bh_event_fn fn, void *ctx);
void bh_events_unsubscribe(void *ctx);
/* subject: a qube name, or NULL/"" for the system (dom0 app). kv: NULL-terminated pairs. */
void bh_events_emit(const char *subject, const char *event, const char *const *kv);
/* True if some admin.vm.Stats stream is open (vm-stats are worth computing). */
bool bh_events_have_stats(void);
