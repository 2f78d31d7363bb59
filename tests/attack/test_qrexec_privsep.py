"""qrexec-daemon is privilege-separated (OpenSSH's model): the process that reads what a
qube sends (its agent's control channel, the relays of its calls) runs as an
unprivileged host UID of its own, with no capabilities, no_new_privs and an allowlist
seccomp filter; only a small root monitor remains, forking call processes on a narrow,
checked request. From inside a qube the daemon cannot be probed directly, so this checks
the running processes' credentials while real calls go through them."""
import pathlib
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import engine_daemon, qvm_run  # noqa: E402,F401
from qrexec_fixtures import CALL_GID, CALL_ID_BASE, bin_path  # noqa: E402,F401


def status(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            out[k] = v.strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = open(f"/proc/{p}/task/{p}/children").read().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for k in map(int, kids):
            out.append(k)
            todo.append(k)
    return out


def daemon_pid(d, name):
    return int((d.runtime / "qubes" / name / "qrexec-daemon.pid").read_text())


def assert_unprivileged(st):
    uids = st["Uid"].split()
    assert "0" not in uids, st["Uid"]
    assert "0" not in st["Gid"].split(), st["Gid"]
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, (st["CapEff"], st["CapPrm"])
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2"  # filter mode
    assert int(uids[0]) < (1 << 20)  # not inside any qube's UID range


def test_the_qube_facing_daemon_is_unprivileged_and_filtered(engine_daemon):
    d = engine_daemon
    assert qvm_run(d, "a", "true").returncode == 0
    mon = daemon_pid(d, "a")
    mst = status(mon)
    # positive control: the monitor bulkheadd started is root, so the probe reads real
    # status; it has its own (denylist) filter
    assert mst and mst["Uid"].split()[0] == "0" and mst["Seccomp"] == "2"
    readers = [p for p in descendants(mon) if (status(p) or {}).get("Name") == "qrexec-unpriv"]
    assert len(readers) == 1, descendants(mon)
    st = status(readers[0])
    assert_unprivileged(st)
    # and it serves: dom0's calls and output go through it
    r = qvm_run(d, "-p", "a", "echo served")
    assert (r.returncode, r.stdout) == (0, b"served\n"), r.stderr
    # two qubes' daemons never share an identity
    assert qvm_run(d, "b", "true").returncode == 0
    other = [p for p in descendants(daemon_pid(d, "b")) if (status(p) or {}).get("Name") == "qrexec-unpriv"]
    assert len(other) == 1 and status(other[0])["Uid"] != st["Uid"]




def assert_call_identity(st, qid, saved=None):
    """A call process (or what it runs): the qube's call UID in every slot (the saved
    one, for the call process itself, may be `saved`: the qube's unprivileged ID its
    relay becomes), the dom0 qrexec group and no other, no capability in any set,
    no_new_privs, filtered."""
    assert_unprivileged(st)
    call, grp = str(CALL_ID_BASE + qid), str(CALL_GID)
    assert st["Uid"].split() == [call, call, saved or call, call], st["Uid"]
    assert st["Gid"].split() == [grp, grp, saved or grp, grp], st["Gid"]
    assert st["Groups"] == "", st["Groups"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
        assert int(st[cap], 16) == 0, (cap, st[cap])


def test_a_call_between_qubes_runs_unprivileged(engine_daemon):
    """The call process the root monitor forks for a qube's call (policy, bulkheadd, the
    target's daemon and vchan dir) and the relay it forks run as the qube's call
    identity: not root, no capabilities (bounding set included), no_new_privs,
    undumpable, filtered."""
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.VMShell  *  a  b  allow\n")
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    mon = daemon_pid(d, "a")
    res = {}
    t = threading.Thread(target=lambda: res.update(r=qvm_run(
        d, "-p", "--user", "root", "a",
        "echo 'sleep 3; echo relayed' | /usr/lib/bulkhead/qrexec-client-vm b qubes.VMShell")))
    t.start()
    seen = {}
    deadline = time.time() + 60
    while t.is_alive() and time.time() < deadline:
        for p in descendants(mon):
            st = status(p)
            if st:
                seen[p] = st
        time.sleep(0.1)
    t.join()
    assert res["r"].returncode == 0 and res["r"].stdout == b"relayed\n", res["r"].stderr
    readers = [st for st in seen.values() if st["Name"] == "qrexec-unpriv"]
    assert len(readers) == 1, {p: st["Name"] for p, st in seen.items()}
    qid = int(readers[0]["Uid"].split()[0]) - (1 << 19)
    calls = {p: st for p, st in seen.items() if st["Name"] != "qrexec-unpriv"}
    # positive control: the call process and its relay were seen while the call ran
    assert len(calls) >= 2, {p: st["Name"] for p, st in seen.items()}
    unpriv = str((1 << 19) + qid)
    relays = [st for st in calls.values() if st["Uid"].split()[0] == unpriv]
    callers = [st for st in calls.values() if st["Uid"].split()[0] != unpriv]
    assert relays and callers, {p: (st["Name"], st["Uid"]) for p, st in calls.items()}
    for st in callers:
        # the call identity, with the qube's unprivileged ID saved for its relay
        assert_call_identity(st, qid, saved=unpriv)
    for st in relays:
        # the relay moves the qube's bytes and needs no socket: it sheds the call
        # identity and its group (bulkheadd's and the daemons' sockets) for the qube's
        # unprivileged one, in every slot
        assert_unprivileged(st)
        assert st["Uid"].split() == [unpriv] * 4 and st["Gid"].split() == [unpriv] * 4, (st["Uid"], st["Gid"])
        assert st["Groups"] == "", st["Groups"]
    for st in calls.values():
        # a filter of its own on top of the monitor's: the call process's allowlist (a
        # qube is the target: nothing to exec), and the relay's on top of that
        assert int(st["Seccomp_filters"]) >= 2, st["Seccomp_filters"]
    # the monitor, their parent, is the one root process, with its denylist alone
    assert status(mon)["Uid"].split()[0] == "0" and status(mon)["Seccomp_filters"] == "1"
    assert_unprivileged(readers[0])


def test_the_agents_hello_is_read_unprivileged():
    """The first bytes a qube sends (its agent's HELLO) are parsed by the unprivileged
    side too: while the daemon waits for them, the process that will read them is already
    the unprivileged, filtered child (before, the root process read the HELLO and split
    only after it)."""
    import os
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from qrexec_fixtures import Qube, World
    from test_qrexec_daemon import FakeAgent
    w = World()
    try:
        q = Qube(w, "slow", 7)
        w.qubes["slow"] = q
        fa = FakeAgent(q, 3)
        r, wr = os.pipe()
        p = w.spawn([bin_path("qrexec-daemon"), "--name", "slow", "--domid", str(q.qid), "--runtime", str(w.runtime),
                     "--ready-fd", str(wr), "--startup-timeout", "5"], pass_fds=(wr,), log="daemon-slow")
        os.close(wr)
        # accept the daemon's connection but send no HELLO: the daemon waits for it
        fa.srv.settimeout(10)
        conn, _ = fa.srv.accept()
        deadline = time.time() + 60  # the split is polled for (was: 0.5 s, then one look)
        while not descendants(p.pid) and time.time() < deadline:
            time.sleep(0.05)
        kids = descendants(p.pid)
        assert len(kids) == 1, kids  # positive control: the split happened before the HELLO
        assert_unprivileged(status(kids[0]))

        # now the HELLO: the unprivileged side answers it and says ready
        conn.sendall(__import__("struct").pack("<III", 0x300, 4, 3))
        conn.settimeout(10)
        assert conn.recv(12)[:4] == (0x300).to_bytes(4, "little")
        assert os.read(r, 1) == b"1"
        os.close(r)
        conn.close()
    finally:
        w.close()


def test_the_monitor_holds_the_call_limits_itself():
    """The unprivileged side applies a qube's call limits (rate, pending calls); one that
    a qube has compromised would not. With those limits switched off in it (a test-only
    switch standing in for the compromise), the root monitor still forks no more call
    processes than the rate's burst and no slot past the pending limit."""
    import os
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from qrexec_fixtures import MSG, Qube, World, trigger3
    from test_qrexec_daemon import FakeAgent

    def flood(unlimited):
        w = World()
        try:
            w.service("test.Hold", "#!/bin/sh\nsleep 5\n")
            w.allow_call("test.Hold", "evil", "work")  # the target need not exist: each call still forks
            q = Qube(w, "evil", 7)
            w.qubes["evil"] = q
            fa = FakeAgent(q, 3)
            r, wr = os.pipe()
            env = dict(os.environ, BULKHEAD_QREXEC_CALL_RATE="2", BULKHEAD_QREXEC_MAX_PENDING="16")
            if unlimited:
                env["BULKHEAD_QREXEC_TEST_UNLIMITED_READER"] = "1"
            w.spawn([bin_path("qrexec-daemon"), "--name", "evil", "--domid", str(q.qid), "--runtime", str(w.runtime),
                     "--ready-fd", str(wr), "--startup-timeout", "5", "--call-timeout", "5", "--test-allow",
                     str(w.allow)], pass_fds=(wr,), env=env, log="daemon-evil")
            os.close(wr)
            fa.accept()
            assert os.read(r, 1) == b"1"
            os.close(r)
            n = 40
            fa.conn.sendall(b"".join(trigger3("work", f"F{i}", "test.Hold") for i in range(n)))
            got = []
            fa.conn.settimeout(3)
            try:
                while len(got) < n:
                    got.append(fa.recv_msg(timeout=3)[0])
            except (TimeoutError, OSError):
                pass
            time.sleep(0.5)
            log = w.log_text("daemon-evil")
            forked = log.count("call evil -> work")  # each call process logs its decision
            return forked, got.count(MSG["REFUSED"]), log
        finally:
            w.close()

    forked, refused, log = flood(unlimited=True)
    assert forked <= 3 * 2 + 2, (forked, log[-2000:])  # the monitor's burst
    assert "monitor: call over the rate refused" in log
    # positive control: the flood is real, and the honest side refuses it on its own
    forked_h, refused_h, log_h = flood(unlimited=False)
    assert forked_h <= 3 * 2 and refused_h >= 40 - 3 * 2, (forked_h, refused_h)
    assert "monitor: call over the rate" not in log_h


def test_the_root_side_cannot_touch_mounts_namespaces_or_the_kernel():
    """The root monitor, its call processes and the dom0 services they run carry a
    denylist filter: a dom0 service reached by a qube's call cannot mount, unshare, load
    BPF or use keyrings (EPERM), which the same program can do outside the daemon."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from qrexec_fixtures import World
    probe = ("for c in 'unshare -m true' 'unshare -n true' 'keyctl show @s' 'mount -t tmpfs none /nonexistent-bh'; "
             "do $c >/dev/null 2>&1; echo \"$c: $?\"; done")
    w = World()
    try:
        w.service("test.Probe", "#!/bin/sh\n" + probe + "\n", dom0=True)
        w.allow_call("test.Probe", "work", "@adminvm", "dom0")
        work = w.qube("work", 5)
        r = work.run(["qrexec-client-vm", "@adminvm", "test.Probe"])
        inside = r.stdout.decode()
        outside = subprocess.run(["sh", "-c", probe], capture_output=True, text=True).stdout
        # positive control: outside the daemon, unshare works (root on the host)
        assert "unshare -m true: 0" in outside and "unshare -n true: 0" in outside, outside
        assert "unshare -m true: 1" in inside and "unshare -n true: 1" in inside, (inside, r.stderr)
        # mount fails for want of the directory outside, and of the syscall inside
        assert "mount -t tmpfs none /nonexistent-bh: 0" not in inside
    finally:
        w.close()
