/* Engine lookup and the Qubes names of power states. */
#include "driver/driver.h"
#include "driver/ns/ns.h"
#include "driver/vm/vm.h"
#include <string.h>

const char *bh_power_state_name(enum bh_power_state s)
{
    static const char *const names[] = {
        [BH_STATE_HALTED] = "Halted", [BH_STATE_TRANSIENT] = "Transient", [BH_STATE_RUNNING] = "Running",
        [BH_STATE_PAUSED] = "Paused", [BH_STATE_HALTING] = "Halting", [BH_STATE_DYING] = "Dying",
        [BH_STATE_CRASHED] = "Crashed", [BH_STATE_NA] = "NA",
    };
    if ((unsigned)s < sizeof names / sizeof names[0] && names[s])
        return names[s];
    return "NA";
}

const struct bh_driver *bh_driver_get(const char *virt_mode)
{
    if (virt_mode && !strcmp(virt_mode, "ns"))
        return &bh_driver_ns;
    /* Qubes' names for a hardware VM: both run a QEMU microvm here */
    if (virt_mode && (!strcmp(virt_mode, "vm") || !strcmp(virt_mode, "pvh") || !strcmp(virt_mode, "hvm")))
        return &bh_driver_vm;
    return NULL;
}
