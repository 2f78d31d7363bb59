/* Ending every host process left with a halted qube's qrexec identities, before its qid
 * can be given to another qube (docs/qrexec.md, "Privilege separation"). */
#pragma once
#include <stdint.h>

/* Kills (SIGKILL) every process whose real or saved UID is qid's call identity
 * (BH_QX_CALL_ID_BASE + qid) or its unprivileged daemon identity (BH_QX_UNPRIV_ID_BASE
 * + qid). Returns 0, or -1 if a UID could not be swept (warned). */
int bh_qube_ids_reap(uint32_t qid);
