"""qvm-start/-shutdown/-kill/-pause/-unpause against a real bulkheadd.

They call admin.vm.Start/Shutdown/Kill/Pause/Unpause on a daemon with the ns engine:
where its premise holds (root) qubes must really start, stop, pause."""
import pytest

from tools_fixtures import qd, require_qubes_start, usage_error  # noqa: F401

TOOLS = ["qvm-start", "qvm-shutdown", "qvm-kill", "qvm-pause", "qvm-unpause"]


def state(qd, vm):
    return qd.call("admin.vm.CurrentState", vm).split("power_state=")[1].split()[0]


@pytest.mark.parametrize("tool", TOOLS)
def test_argument_errors(qd, tool):
    usage_error(qd.run(tool), tool, "one of the arguments --all VMNAME is required")
    usage_error(qd.run(tool, "nosuchqube"), tool, "no such domain: 'nosuchqube'")
    usage_error(qd.run(tool, "--all", "work"), tool, "argument VMNAME: not allowed with argument --all")
    usage_error(qd.run(tool, "--exclude", "work", "work"), tool, "--exclude can only be used with --all")


def test_start_running_qube(qd):
    r = qd.run("qvm-start", "dom0")
    assert r.rc == 1 and r.err == "Error: domain dom0 is already running\n"
    r = qd.run("qvm-start", "--skip-if-running", "dom0")
    assert r.rc == 0 and r.err == ""


def test_shutdown_wait_halted_qube(qd):
    assert state(qd, "work") == "Halted"
    r = qd.run("qvm-shutdown", "--wait", "--timeout", "3", "work")
    assert r.rc == 0, r
    usage_error(qd.run("qvm-shutdown", "--timeout", "soon", "work"), "qvm-shutdown",
                "argument --timeout: invalid float value: 'soon'")


def test_lifecycle(qd):
    require_qubes_start()
    r = qd.run("qvm-start", "vault")
    assert r.rc == 0 and r.err == "", r
    assert state(qd, "vault") in ("Running", "Transient")
    assert qd.run("qvm-check", "--running", "vault").rc == 0
    assert qd.run("qvm-pause", "vault").rc == 0
    assert state(qd, "vault") == "Paused"
    assert qd.run("qvm-check", "--paused", "vault").rc == 0
    assert qd.run("qvm-unpause", "vault").rc == 0
    assert state(qd, "vault") == "Running"
    r = qd.run("qvm-shutdown", "--wait", "--timeout", "30", "vault")
    assert r.rc == 0, r
    assert state(qd, "vault") == "Halted"
    assert qd.run("qvm-start", "vault").rc == 0
    assert qd.run("qvm-kill", "vault").rc == 0
    assert state(qd, "vault") == "Halted"
    # Killing a halted qube is not an error.
    assert qd.run("qvm-kill", "vault").rc == 0


def test_shutdown_timeout_kills_and_dry_run(qd):
    require_qubes_start()
    assert qd.run("qvm-start", "vault").rc == 0
    # --dry-run changes nothing: the qube stays up and counts as not shut down.
    r = qd.run("qvm-shutdown", "--dry-run", "--wait", "--timeout", "1", "vault")
    assert r.rc == 1 and r.err.endswith("qvm-shutdown: error: Failed to shut down: vault\n")
    assert state(qd, "vault") == "Running"
    # No time to shut down cleanly: what still runs is killed.
    r = qd.run("qvm-shutdown", "--wait", "--timeout", "0", "vault")
    assert r.rc == 0, r
    assert state(qd, "vault") == "Halted"
    assert r.err in ("", "app: Killing remaining qubes: vault\n")


def test_shutdown_rounds_and_all(qd):
    # A network provider of our own (not sys-net, which may hold the host's uplink) and a
    # client: the provider cannot go down while its client runs, so qvm-shutdown --wait
    # shuts down the client first and retries the provider, as Qubes does.
    assert qd.run("qvm-create", "-l", "green", "--prop", "provides_network=True",
                  "--prop", "netvm=", "lc-net").rc == 0
    assert qd.run("qvm-create", "-l", "red", "--prop", "netvm=lc-net", "lc-app").rc == 0
    require_qubes_start()
    assert qd.run("qvm-start", "lc-net", "lc-app").rc == 0
    assert qd.state("lc-net") == "Running" and qd.state("lc-app") == "Running"
    r = qd.run("qvm-shutdown", "lc-net")
    assert r.rc == 1
    assert r.err.startswith("lc-net: Shutdown error: ")
    assert r.err.endswith("qvm-shutdown: error: Failed to shut down: lc-net\n")
    r = qd.run("qvm-shutdown", "--wait", "--timeout", "60", "lc-net", "lc-app")
    assert r.rc == 0, r
    assert qd.state("lc-net") == "Halted" and qd.state("lc-app") == "Halted"
    # --all implies --force and waits for everything.
    assert qd.run("qvm-start", "lc-net", "lc-app", "vault").rc == 0
    r = qd.run("qvm-shutdown", "--wait", "--all", "--timeout", "60")
    assert r.rc == 0, r
    assert qd.running() == ["dom0"]
