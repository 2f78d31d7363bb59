"""A target keeps room for dom0's calls: however many calls another qube holds toward it,
qube-to-qube calls never take the last inodes of the target's vchan dir (a 64-inode
tmpfs, as the ns engine mounts it), so dom0's qrexec-client can still bind its data
socket there. The attacker is a hostile agent (raw protocol) with an allow rule toward
the target, whose agent is stopped so that every name it binds stays."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from qrexec_fixtures import MSG, Qube, World, bin_path, trigger3  # noqa: E402
from test_qrexec_daemon import FakeAgent  # noqa: E402


@pytest.fixture
def world():
    w = World()
    mounted = []
    yield w, mounted
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], check=False)
    w.close()


def small_vchan_qube(world, mounted, name, qid):
    """A qube whose vchan dir is a 64-inode tmpfs (the ns engine's), with a real agent."""
    q = Qube(world, name, qid)
    world.qubes[name] = q
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=64k,nr_inodes=64", "bh-test-vchan",
                    str(q.vchan)], check=True)
    mounted.append(q.vchan)
    q.start_agent()
    q.start_daemon()
    return q


def hostile_caller(world, name, qid):
    q = Qube(world, name, qid)
    world.qubes[name] = q
    fa = FakeAgent(q, 3)
    r, w = os.pipe()
    env = dict(os.environ, BULKHEAD_QREXEC_CALL_RATE="10000")  # the rate limit is not what is tested
    world.spawn([bin_path("qrexec-daemon"), "--name", name, "--domid", str(q.qid), "--runtime", str(world.runtime),
                 "--ready-fd", str(w), "--startup-timeout", "5", "--call-timeout", "30", "--test-allow",
                 str(world.allow)], pass_fds=(w,), env=env, log=f"daemon-{name}")
    os.close(w)
    fa.accept()
    assert os.read(r, 1) == b"1"
    os.close(r)
    return fa


def test_calls_from_another_qube_leave_room_for_dom0(world):
    world, mounted = world
    world.service("test.Wait", "#!/bin/sh\ncat >/dev/null\n")
    world.allow_call("test.Wait", "evil", "work")
    work = small_vchan_qube(world, mounted, "work", 5)
    fa = hostile_caller(world, "evil", 7)
    os.kill(work.agent.pid, signal.SIGSTOP)  # every name bound in work's dir now stays
    try:
        n = 64  # the caller's whole quota of pending calls: more than the dir holds
        fa.conn.sendall(b"".join(trigger3("work", f"H{i}", "test.Wait") for i in range(n)))
        got = [fa.recv_msg(timeout=30)[0] for _ in range(n)]
        held = [x for x in os.listdir(work.vchan) if x.startswith(f"vchan.{world.qid(7)}.{work.qid}.")]
        # positive control: the flood really took most of the target's dir
        assert got.count(MSG["SERVICE_CONNECT"]) >= 40 and len(held) >= 40, (got.count(MSG["SERVICE_CONNECT"]),
                                                                             len(held))
        assert got.count(MSG["REFUSED"]) > 0  # and it was stopped short of filling it
        # dom0's call finds room while the flood is held
        client = subprocess.Popen([bin_path("qrexec-client"), "--runtime", str(world.runtime), "-d", "work",
                                   "user:echo dom0 still gets in"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and client.poll() is None and \
                not any(x.startswith(f"vchan.0.{work.qid}.") for x in os.listdir(work.vchan)):
            time.sleep(0.05)
        assert client.poll() is None, client.communicate()  # it did not fail at bind (ENOSPC)
    finally:
        os.kill(work.agent.pid, signal.SIGCONT)
    out, errout = client.communicate(timeout=30)
    assert (client.returncode, out) == (0, b"dom0 still gets in\n"), errout
