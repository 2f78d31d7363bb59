/* The host identities of qrexec-daemon's unprivileged processes (docs/qrexec.md,
 * "Privilege separation"). Numeric ids, no /etc/passwd entry: all below 2^20, where the
 * qubes' UID ranges start, so no process of any qube has one of them. */
#pragma once

/* A qube's control-channel reader and its calls' relays: UID = GID = 2^19 + qid. */
#define BH_QX_UNPRIV_ID_BASE (1u << 19)

/* A qube's call processes and the dom0 services they run: UID 2^19 + 2^16 + qid (one
 * per qube: two qubes' calls cannot signal each other, nor can the qube's reader), in
 * the group BH_QX_CALL_GID ("dom0 qrexec", 2^19 + 2^17), which is given exactly what a
 * call needs: bulkheadd's socket and the prompt agent's socket (each
 * root:BH_QX_CALL_GID, 0660). What else a call's dom0 program needs comes as an fd with
 * bulkheadd's reply (a console pty, an import file, the target daemon's connection:
 * the daemons' sockets are root's, 0600). */
#define BH_QX_CALL_ID_BASE (BH_QX_UNPRIV_ID_BASE + 0x10000u)
#define BH_QX_CALL_GID (BH_QX_UNPRIV_ID_BASE + 0x20000u)

/* The host UID/GID of a qube's bulkhead-procfs (src/driver/ns/procfs.c): one per qid,
 * below every qube's range (from 2^20) and apart from the ones above and e2fsck's
 * (2^19 - 1). */
#define BH_PROCFS_ID_BASE (BH_QX_UNPRIV_ID_BASE + 0x30000u)
