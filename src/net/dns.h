/* DNS for the qubes' network: the upstream resolvers (read from a resolv.conf) that
 * each netvm at the edge translates 10.139.1.1/10.139.1.2 to, and resolution of
 * firewall `dsthost` names through those resolvers from the uplink's namespace. */
#pragma once
#include <netinet/in.h>
#include <stddef.h>

#define BH_DNS_VIRT1 "10.139.1.1"
#define BH_DNS_VIRT2 "10.139.1.2"

/* At most max IPv4 `nameserver` entries of resolv.conf text (bounded parse). */
int bh_dns_parse_resolv(const char *text, size_t len, struct in_addr *out, int max);
/* Reads path (at most 64 KiB) and parses it; 0 if missing. */
int bh_dns_read_resolv(const char *path, struct in_addr *out, int max);
#define BH_DNS_MSG_MAX 4096 /* the longest answer read (longer: cut, as truncated) */
/* Resolves host's A (family AF_INET, out: struct in_addr[max]) or AAAA records
 * (AF_INET6, out: struct in6_addr[max]) asking servers[0..n) from inside namespace
 * nsfd (-1: the caller's), 1 s per try, one retry. Returns the count, or -1 if it
 * does not resolve (no such name, or no address of that family, as getaddrinfo). */
int bh_dns_resolve(int nsfd, const struct in_addr *servers, int n, const char *host, int family, void *out, int max);
/* The addresses of one family in a DNS answer (msg: len bytes from the network,
 * bounded by BH_DNS_MSG_MAX): the parsing part of bh_dns_resolve, fuzzed. Only IN
 * records of the asked type with exactly 4 (A) or 16 (AAAA) bytes count. Returns the
 * count (at most max), or -1 if the message does not parse or holds none. */
int bh_dns_answer_addrs(const unsigned char *msg, int len, int family, void *out, int max);
