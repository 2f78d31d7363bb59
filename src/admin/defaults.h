#pragma once
#include "model.h"
/* Creates Bulkhead's default layout of qubes in a new store (Qubes' installer does the
 * same): template host; sys-net, sys-firewall, default-dvm, work, personal, untrusted,
 * vault; and the global defaults that tie them together. */
int bh_defaults_create(struct bh_app *app, bh_error *err);
