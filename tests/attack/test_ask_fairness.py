"""`ask` prompts are fair across source qubes: one qube that floods asks gets at most a
few questions waiting (the rest are denied at once, with a log line), and another
qube's question is shown next, not after the flood."""
import pathlib as _pl
import sys as _sys
import time

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from test_ask_prompt import agent_factory, ask  # noqa: E402,F401
from waiting import wait_for  # noqa: E402


def connections(sock):
    """How many connections the agent holds open on its socket (accepted sockets carry
    its path in /proc/net/unix; state 03 is connected)."""
    rows = [line.split() for line in open("/proc/net/unix").read().splitlines()[1:]]
    return sum(1 for r in rows if len(r) >= 8 and r[5] == "03" and r[7] == str(sock))


def test_one_qubes_flood_of_asks_does_not_delay_another(agent_factory):
    a = agent_factory(timeout=60)
    flood = []
    for i in range(15):
        flood.append(ask(a.sock, "--source", "evil", "--service", f"qubes.Flood{i}", "--", "b"))
        time.sleep(0.02)
    head, _ = a.question()
    assert head.startswith("evil wants to call qubes.Flood")  # positive control: the flood arrived
    time.sleep(0.5)
    work = ask(a.sock, "--source", "work", "--service", "qubes.Filecopy", "--default", "b", "--", "b")
    # While the first question is on screen, evil's excess is denied at once.
    wait_for(lambda: sum(p.poll() is not None for p in flood) >= 11, step=0.1)
    done = [p for p in flood if p.poll() is not None]
    assert len(done) >= 11, f"only {len(done)} of evil's 15 asks were refused at once"
    assert all(p.returncode != 0 and p.stdout.read() == b"" for p in done)
    # work's relay (a new process) has connected and waits behind evil's: the agent holds
    # one connection per evil ask not refused, and work's (was: sleep 2)
    held = sum(p.poll() is None for p in flood) + 1
    assert wait_for(lambda: connections(a.sock) >= held), (connections(a.sock), held)
    a.type("n\n")
    head, _ = a.question()
    assert head == "work wants to call qubes.Filecopy; choose a target:", a.out.decode(errors="replace")[-3000:]
    a.type("\n")
    out, _ = work.communicate(timeout=60)
    assert (work.returncode, out) == (0, b"b\n")
    for p in flood:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_asks_per_source_is_a_runtime_knob(agent_factory):
    """BULKHEAD_ASK_PER_SOURCE=1: one question on screen, one waiting, the rest of the
    source's asks denied at once (with the default 3, three would wait)."""
    a = agent_factory(timeout=60, extra_env={"BULKHEAD_ASK_PER_SOURCE": "1"})
    flood = []
    for i in range(6):
        flood.append(ask(a.sock, "--source", "evil", "--service", f"qubes.Flood{i}", "--", "b"))
        time.sleep(0.02)
    head, _ = a.question()
    assert head.startswith("evil wants to call qubes.Flood")  # positive control
    wait_for(lambda: sum(p.poll() is not None for p in flood) >= 4, step=0.1)
    time.sleep(0.5)  # nothing more is refused: one is shown, one waits
    done = [p for p in flood if p.poll() is not None]
    assert len(done) == 4, f"{len(done)} of 6 asks refused at once, expected 4"
    for p in flood:
        if p.poll() is None:
            p.kill()
        p.wait()
