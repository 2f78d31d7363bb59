/* vm-stats events for admin.vm.Stats streams (see stats.c). */
#pragma once
#include "model.h"

void bh_stats_init(struct bh_app *app);
/* A new stream: send the first sample at the next tick rather than a whole interval later. */
void bh_stats_now(void);
