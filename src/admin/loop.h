/* bulkheadd's single event loop (epoll): fds with callbacks, and a periodic tick for
 * deadlines (abandoned connections, shutdown timeouts). No threads. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

typedef void (*bh_fd_cb)(void *ctx, uint32_t events);
typedef void (*bh_tick_cb)(void *ctx);

int bh_loop_init(void);
int bh_loop_add(int fd, uint32_t events, bh_fd_cb cb, void *ctx);
int bh_loop_mod(int fd, uint32_t events, bh_fd_cb cb, void *ctx);
void bh_loop_del(int fd);
int bh_loop_on_tick(bh_tick_cb cb, void *ctx);
/* Runs cb once, after the events of the current loop iteration (so after the replies
 * they produced were sent): work a client need not wait for. */
int bh_loop_defer(bh_tick_cb cb, void *ctx);
/* Runs the deferred work now (the server calls it after each reply it sent, so that the
 * next request, even one accepted in the same iteration, sees it done). */
void bh_loop_run_deferred(void);
/* Runs until bh_loop_stop(). */
int bh_loop_run(void);
void bh_loop_stop(void);
int64_t bh_now_ms(void);
