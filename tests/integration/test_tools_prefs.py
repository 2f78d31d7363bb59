"""qvm-prefs and qubes-prefs against a real bulkheadd."""
from tools_fixtures import qd, usage_error  # noqa: F401


def listing(out):
    rows = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        rows[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return rows


def test_list_marks_defaults(qd):
    r = qd.run("qvm-prefs", "work")
    assert r.rc == 0 and r.err == ""
    rows = listing(r.out)
    assert rows["label"] == ("-", "blue")
    assert rows["memory"] == ("D", "400")
    assert rows["netvm"] == ("-", "sys-firewall")
    assert list(rows) == sorted(rows)
    # Names are padded to the longest one, then two spaces, flag, two spaces, value.
    width = max(len(n) for n in rows)
    assert r.out.splitlines()[0][width:width + 5] in ("  D  ", "  -  ")
    r = qd.run("qvm-prefs", "--hide-default", "work")
    assert "memory" not in listing(r.out) and "label" in listing(r.out)
    # An unset vm property lists as None.
    assert listing(qd.run("qvm-prefs", "vault").out)["netvm"] == ("-", "None")


def test_get_set_reset(qd):
    assert qd.run("qvm-prefs", "work", "memory").out == "400\n"
    r = qd.run("qvm-prefs", "work", "memory", "800")
    assert r.rc == 0 and r.out == "" and r.err == ""
    assert qd.call("admin.vm.property.Get", "work", arg="memory") == "default=False type=int 800"
    assert qd.run("qvm-prefs", "--default", "work", "memory").rc == 0
    assert qd.call("admin.vm.property.Get", "work", arg="memory") == "default=True type=int 400"
    # Dashes in property names become underscores; -D is --default.
    assert qd.run("qvm-prefs", "work", "qrexec-timeout", "90").rc == 0
    assert qd.run("qvm-prefs", "work", "qrexec_timeout").out == "90\n"
    assert qd.run("qvm-prefs", "work", "qrexec_timeout", "-D").rc == 0
    assert qd.run("qvm-prefs", "work", "qrexec_timeout").out == "60\n"


def test_none_for_vm_properties(qd):
    assert qd.run("qvm-prefs", "personal", "netvm", "None").rc == 0
    assert qd.call("admin.vm.property.Get", "personal", arg="netvm") == "default=False type=vm "
    r = qd.run("qvm-prefs", "personal", "netvm")
    assert r.rc == 0 and r.out == ""
    assert qd.run("qvm-prefs", "personal", "netvm", "sys-firewall").rc == 0
    assert qd.run("qvm-prefs", "personal", "netvm").out == "sys-firewall\n"


def test_errors(qd):
    usage_error(qd.run("qvm-prefs", "nosuch"), "qvm-prefs", "no such domain: 'nosuch'")
    usage_error(qd.run("qvm-prefs", "work", "nosuchprop"), "qvm-prefs",
                "no such property: 'nosuchprop'")
    usage_error(qd.run("qvm-prefs", "work", "nosuchprop", "1"), "qvm-prefs",
                "no such property: 'nosuchprop'")
    usage_error(qd.run("qvm-prefs"), "qvm-prefs", "the following arguments are required: VMNAME")
    r = qd.run("qvm-prefs", "work", "memory", "lots")
    assert r.rc == 1 and r.err == "qvm-prefs: error: Failed to parse property value as int\n"  # Qubes' words
    assert qd.call("admin.vm.property.Get", "work", arg="memory") == "default=True type=int 400"
    r = qd.run("qvm-prefs", "work", "netvm", "nosuchvm")
    assert r.rc == 1 and r.err.startswith("qvm-prefs: error: ")
    # A netvm loop is refused by the daemon and reported.
    r = qd.run("qvm-prefs", "sys-net", "netvm", "sys-firewall")
    assert r.rc == 1 and r.err.startswith("qvm-prefs: error: ")


def test_help(qd):
    r = qd.run("qvm-prefs", "--help")
    assert r.rc == 0 and r.out.startswith("usage: qvm-prefs ") and "--hide-default" in r.out
    r = qd.run("qvm-prefs", "--help-properties", "work")
    assert r.rc == 0 and "memory" in r.out


def test_qubes_prefs(qd):
    r = qd.run("qubes-prefs")
    assert r.rc == 0
    rows = listing(r.out)
    assert rows["default_template"] == ("-", "host") or rows["default_template"][1] == "host"
    assert qd.run("qubes-prefs", "default_netvm").out == "sys-firewall\n"
    assert qd.run("qubes-prefs", "default_netvm", "sys-net").rc == 0
    assert qd.call("admin.property.Get", arg="default_netvm").endswith("type=vm sys-net")
    assert qd.run("qubes-prefs", "--default", "default_netvm").rc == 0
    usage_error(qd.run("qubes-prefs", "nosuchprop"), "qubes-prefs", "no such property: 'nosuchprop'")
