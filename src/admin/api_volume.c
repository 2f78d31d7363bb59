/* admin.vm.volume.* and admin.pool.*: filled in when the storage pool is built in. */
#include "api.h"
const struct bh_method bh_api_volume[] = {
    { NULL, NULL, 0 },
};
