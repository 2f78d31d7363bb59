#include "nft.h"
#include "netns.h"
#include <errno.h>
#include <nftables/libnftables.h>
#include <string.h>

int bh_nft_run_here(int nsfd, const char *script, bh_error *err)
{
    int saved = -1;
    if (nsfd >= 0 && bh_netns_enter(nsfd, &saved, err) < 0)
        return -1;
    /* The context (and its netlink socket) is made inside the namespace. */
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    int ret = 0;
    if (!ctx) {
        ret = bh_fail(err, ENOMEM, "nft context");
    } else {
        nft_ctx_buffer_output(ctx);
        nft_ctx_buffer_error(ctx);
        if (nft_run_cmd_from_buffer(ctx, script) != 0) {
            const char *msg = nft_ctx_get_error_buffer(ctx);
            ret = bh_fail(err, EINVAL, "nftables: %.400s", msg && *msg ? msg : "transaction refused");
        }
        nft_ctx_free(ctx);
    }
    bh_netns_leave(saved);
    return ret;
}
