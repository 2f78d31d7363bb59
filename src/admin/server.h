/* The Admin API socket: accepts connections, reads one request per connection (until
 * the client half-closes), dispatches it, writes the reply and closes; admin.Events
 * connections stay open and receive events. Every connection is non-blocking with a
 * bounded input and output, and a deadline to send its request, so a slow or hostile
 * client costs only its own connection. */
#pragma once
#include "model.h"
#include "response.h"

#define BH_SERVER_MAX_CONNS 4096
#define BH_SERVER_REQUEST_TIMEOUT_MS 10000
#define BH_SERVER_EVENT_QUEUE_MAX (8u << 20)

int bh_server_start(struct bh_app *app, const char *socket_path, bh_error *err);
void bh_server_stop(void);
/* Sends the reply of a call parked by its handler (c->park): "0\0" when e is NULL,
 * else the exception. The connection then closes as usual. */
void bh_server_finish(void *conn, const struct bh_exc *e);
