"""qvm-firewall against a real bulkheadd: Qubes' rule syntax in, Admin API rules out."""
import re
import time

from tools_fixtures import qd, usage_error  # noqa: F401

HEAD = ["NO", "ACTION", "HOST", "PROTOCOL", "PORT(S)", "SPECIAL TARGET", "ICMP TYPE", "EXPIRE",
        "COMMENT"]


def norm(rule):
    """A rule's elements in a canonical order (the daemon may order them its own way)."""
    head, sep, comment = rule.partition("comment=")
    return " ".join(sorted(head.split())) + (" comment=" + comment if sep else "")


def rules(qd, vm):
    return [norm(r) for r in qd.call("admin.vm.firewall.Get", vm).splitlines()]


def cells(line):
    return re.split(r"\s{2,}", line.strip())


def test_add_list_del_reset(qd):
    vm = "personal"
    assert qd.run("qvm-firewall", vm, "reset").rc == 0
    assert rules(qd, vm) == ["action=accept"]
    assert qd.run("qvm-firewall", vm, "del", "--rule-no", "0").rc == 0
    assert rules(qd, vm) == []
    assert qd.run("qvm-firewall", vm, "add", "accept", "qubes-os.org", "tcp", "443").rc == 0
    assert qd.run("qvm-firewall", vm, "add", "action=drop", "proto=icmp", "icmptype=8").rc == 0
    assert qd.run("qvm-firewall", vm, "add", "--before", "0", "accept", "192.168.0.0/24",
                  "comment=Allow LAN").rc == 0
    assert qd.run("qvm-firewall", vm, "add", "accept", "specialtarget=dns").rc == 0
    assert rules(qd, vm) == [norm(r) for r in [
        "action=accept dst4=192.168.0.0/24 comment=Allow LAN",
        "action=accept proto=tcp dsthost=qubes-os.org dstports=443-443",
        "action=drop proto=icmp icmptype=8",
        "action=accept specialtarget=dns",
    ]]
    r = qd.run("qvm-firewall", vm)
    assert r.rc == 0
    lines = r.out.splitlines()
    assert cells(lines[0]) == HEAD
    assert cells(lines[1]) == ["0", "accept", "192.168.0.0/24", "-", "-", "-", "-", "-", "Allow LAN"]
    assert cells(lines[2]) == ["1", "accept", "qubes-os.org", "tcp", "443", "-", "-", "-", "-"]
    assert cells(lines[3]) == ["2", "drop", "-", "icmp", "-", "-", "8", "-", "-"]
    r = qd.run("qvm-firewall", vm, "--raw", "list")
    assert [norm(x) for x in r.out.splitlines()] == rules(qd, vm)
    assert qd.run("qvm-firewall", vm, "del", "drop", "proto=icmp", "icmptype=8").rc == 0
    assert qd.run("qvm-firewall", vm, "del", "--rule-no", "0").rc == 0
    assert rules(qd, vm) == [norm("action=accept proto=tcp dsthost=qubes-os.org dstports=443-443"),
                             norm("action=accept specialtarget=dns")]
    assert qd.run("qvm-firewall", vm, "reset").rc == 0
    assert rules(qd, vm) == ["action=accept"]


def test_expire(qd):
    vm = "untrusted"
    assert qd.run("qvm-firewall", vm, "reset").rc == 0
    now = int(time.time())
    assert qd.run("qvm-firewall", vm, "add", "accept", "10.1.2.3", "expire=+3600").rc == 0
    last = rules(qd, vm)[-1]
    exp = int(last.split("expire=")[1].split()[0])
    assert "dst4=10.1.2.3/32" in last and now + 3590 < exp <= now + 3700
    line = qd.run("qvm-firewall", vm).out.splitlines()[-1]
    m = re.search(r"\+(\d+)s", line)
    assert m and 3500 < int(m.group(1)) <= 3700


def test_bad_rules(qd):
    vm = "vault"
    before = rules(qd, vm)
    usage_error(qd.run("qvm-firewall", vm, "add", "accept", "Not_A_Host!"), "qvm-firewall",
                "Invalid hostname")
    usage_error(qd.run("qvm-firewall", vm, "add", "dsthost=", "accept"), "qvm-firewall",
                "invalid rule description: dsthost=")
    usage_error(qd.run("qvm-firewall", vm, "add", "accept", "x.org", "tcp", "70000"),
                "qvm-firewall", "Ports out of range")
    usage_error(qd.run("qvm-firewall", vm, "add", "bogus=1", "accept"), "qvm-firewall",
                "Invalid rule element: bogus=1")
    usage_error(qd.run("qvm-firewall", vm, "add", "dstports=80", "accept"), "qvm-firewall",
                "dstports valid only for 'tcp' and 'udp' protocols")
    usage_error(qd.run("qvm-firewall", vm, "flush"), "qvm-firewall",
                "argument command: invalid choice: 'flush' (choose from 'add', 'del', 'list', 'reset')")
    r = qd.run("qvm-firewall", vm, "del", "--rule-no", "99")
    assert r.rc == 1 and r.err.startswith("Error: ")
    r = qd.run("qvm-firewall", vm, "del", "drop", "example.com")
    assert r.rc == 1 and r.err.startswith("Error: ")
    usage_error(qd.run("qvm-firewall", "nosuch", "list"), "qvm-firewall", "no such domain: 'nosuch'")
    assert rules(qd, vm) == before


def test_reload(qd):
    r = qd.run("qvm-firewall", "work", "--reload", "--raw", "list")
    assert r.rc == 0, r and [norm(x) for x in r.out.splitlines()] == rules(qd, "work")
