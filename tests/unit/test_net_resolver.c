/* The daemon's side of the resolver helper: only well-formed answers are taken; anything
 * else counts as the helper being gone (it is then replaced). */
#include "net/resolver.h"
#include "tap.h"
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    struct bh_resolver r = { 0, sv[0] };
    struct bh_resolver_ans a, got;
    CHECK(bh_resolver_recv(&r, &got) == 0); /* nothing yet */

    memset(&a, 0, sizeof a);
    a.id = 7;
    a.n = 2;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == 1 && got.id == 7 && got.n == 2);

    a.n = -1;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == 1 && got.n == -1);

    a.n = BH_RESOLVER_MAX_ADDRS + 1; /* more addresses than a record holds */
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == -1);
    a.n = -2;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == -1);
    a.n = 1; /* the same for the AAAA count */
    a.n6 = BH_RESOLVER_MAX_ADDRS + 1;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == -1);
    a.n6 = -2;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == -1);
    a.n6 = 3;
    CHECK(send(sv[1], &a, sizeof a, 0) == (ssize_t)sizeof a);
    CHECK(bh_resolver_recv(&r, &got) == 1 && got.n == 1 && got.n6 == 3);

    char big[sizeof a + 10];
    memset(big, 0, sizeof big);
    CHECK(send(sv[1], big, sizeof big, 0) == (ssize_t)sizeof big); /* too long */
    CHECK(bh_resolver_recv(&r, &got) == -1);
    CHECK(send(sv[1], big, 3, 0) == 3); /* too short */
    CHECK(bh_resolver_recv(&r, &got) == -1);

    /* requests: the name must fit */
    char name[BH_RESOLVER_HOST_MAX + 2];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK(bh_resolver_send(&r, 1, name) == -1);
    CHECK(bh_resolver_send(&r, 1, "web.test") == 0);
    struct bh_resolver_req q;
    CHECK(recv(sv[1], &q, sizeof q, 0) == (ssize_t)sizeof q && q.id == 1 && !strcmp(q.host, "web.test"));

    close(sv[1]);
    CHECK(bh_resolver_recv(&r, &got) == -1); /* EOF: gone */
    close(sv[0]);
    return tap_done();
}
