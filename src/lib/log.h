/* Logging to stderr with a program tag; level from $BULKHEAD_LOG (error|warn|info|debug). */
#pragma once
enum bh_log_level { BH_LOG_ERROR, BH_LOG_WARN, BH_LOG_INFO, BH_LOG_DEBUG };
void bh_log_init(const char *prog);
void bh_log(enum bh_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define bh_err(...) bh_log(BH_LOG_ERROR, __VA_ARGS__)
#define bh_warn(...) bh_log(BH_LOG_WARN, __VA_ARGS__)
#define bh_info(...) bh_log(BH_LOG_INFO, __VA_ARGS__)
#define bh_debug(...) bh_log(BH_LOG_DEBUG, __VA_ARGS__)
