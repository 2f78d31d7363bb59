"""qvm-tags, qvm-features, qvm-service, qvm-check and qvm-label against a real bulkheadd."""
from tools_fixtures import qd, usage_error  # noqa: F401


def test_tags(qd):
    assert qd.run("qvm-tags", "work", "add", "zeta", "alpha").rc == 0
    assert set(qd.call("admin.vm.tag.List", "work").splitlines()) >= {"zeta", "alpha"}
    r = qd.run("qvm-tags", "work")
    assert r.rc == 0 and r.out.splitlines() == sorted(r.out.splitlines())
    assert {"zeta", "alpha"} <= set(r.out.splitlines())
    r = qd.run("qvm-tags", "work", "list", "alpha")
    assert r.rc == 0 and r.out == "alpha\n"
    r = qd.run("qvm-tags", "work", "ls", "nope")
    assert r.rc == 1 and r.out == ""
    assert qd.run("qvm-tags", "work", "del", "zeta").rc == 0
    assert "zeta" not in qd.call("admin.vm.tag.List", "work").splitlines()
    assert qd.run("qvm-tags", "work", "u", "never-there").rc == 0
    r = qd.run("qvm-tags", "work", "add", "bad tag!")
    assert r.rc == 1 and r.err.startswith("qvm-tags: error: ")
    usage_error(qd.run("qvm-tags", "work", "frobnicate"), "qvm-tags",
                "argument command: invalid choice: 'frobnicate' (choose from 'list', 'ls', 'l', "
                "'add', 'a', 'set', 'del', 'd', 'unset', 'u')")
    usage_error(qd.run("qvm-tags", "work", "add"), "qvm-tags",
                "the following arguments are required: tag")


def test_features(qd):
    assert qd.run("qvm-features", "personal", "gui", "1").rc == 0
    assert qd.run("qvm-features", "personal", "empty", "").rc == 0
    assert qd.call("admin.vm.feature.Get", "personal", arg="gui") == "1"
    r = qd.run("qvm-features", "personal")
    assert r.rc == 0
    lines = r.out.splitlines()
    assert "gui    1" in lines and "empty  " in lines
    r = qd.run("qvm-features", "personal", "gui")
    assert r.rc == 0 and r.out == "1\n"
    r = qd.run("qvm-features", "personal", "nosuch")
    assert r.rc == 1 and r.out == "" and r.err == ""
    assert qd.run("qvm-features", "personal", "gui", "--unset").rc == 0
    assert qd.run("qvm-features", "personal", "gui").rc == 1
    assert qd.run("qvm-features", "-D", "personal", "never-set").rc == 0
    usage_error(qd.run("qvm-features", "--unset", "personal"), "qvm-features",
                "--unset requires a feature")
    usage_error(qd.run("qvm-features", "--unset", "personal", "a", "b"), "qvm-features",
                "cannot both set and unset a value")


def test_features_check_with_template(qd):
    assert qd.run("qvm-features", "host", "tpl-only", "yes").rc == 0
    assert qd.run("qvm-features", "work", "tpl-only").rc == 1
    r = qd.run("qvm-features", "--check-with-template", "work", "tpl-only")
    assert r.rc == 0 and r.out == "yes\n"


def test_service(qd):
    assert qd.run("qvm-service", "untrusted", "cups", "on").rc == 0
    assert qd.call("admin.vm.feature.Get", "untrusted", arg="service.cups") == "1"
    assert qd.run("qvm-service", "untrusted", "ssh", "--disable").rc == 0
    assert qd.call("admin.vm.feature.Get", "untrusted", arg="service.ssh") == ""
    assert qd.run("qvm-service", "-e", "untrusted", "crond").rc == 0
    r = qd.run("qvm-service", "untrusted")
    assert r.rc == 0
    assert r.out.splitlines() == ["cups   on", "ssh    off", "crond  on"] or \
        sorted(r.out.splitlines()) == sorted(["cups   on", "ssh    off", "crond  on"])
    assert qd.run("qvm-service", "untrusted", "cups").out == "on\n"
    assert qd.run("qvm-service", "untrusted", "ssh").out == "off\n"
    assert qd.run("qvm-service", "untrusted", "nope").rc == 1
    r = qd.run("qvm-service", "untrusted", "cups", "perhaps")
    assert r.rc == 1 and r.err == "qvm-service: error: Invalid literal for boolean value: 'perhaps'\n"
    assert qd.run("qvm-service", "untrusted", "cups", "-D").rc == 0
    assert qd.run("qvm-service", "untrusted", "cups").rc == 1


def test_check(qd):
    r = qd.run("qvm-check", "work")
    assert r.rc == 0 and r.err == "qvm-check: work: exists\n"
    r = qd.run("qvm-check", "work", "nosuch")
    assert r.rc == 1 and "qvm-check: nosuch: non-existent!" in r.err
    r = qd.run("qvm-check", "--running", "dom0", "work")
    assert r.rc == 3 and r.err == "qvm-check: dom0: running\n"
    r = qd.run("qvm-check", "--running", "work")
    assert r.rc == 1 and r.err == "qvm-check: None of qubes: running\n"
    assert qd.run("qvm-check", "--template", "host").rc == 0
    assert qd.run("qvm-check", "--template", "work").rc == 1
    assert qd.run("qvm-check", "--networked", "work", "sys-net").rc == 0
    assert qd.run("qvm-check", "--networked", "vault").rc == 1
    assert qd.run("qvm-check", "--paused", "work").rc == 1
    r = qd.run("qvm-check", "-q", "work")
    assert r.rc == 0 and r.err == ""
    r = qd.run("qvm-check", "--all")
    assert r.rc == 0 and "dom0" not in r.err and "qvm-check: work: exists" in r.err
    usage_error(qd.run("qvm-check"), "qvm-check", "one of the arguments --all VMNAME is required")


def test_label(qd):
    r = qd.run("qvm-label")
    assert r.rc == 0 and r.out.splitlines()[:8] == ["red", "orange", "yellow", "green", "gray",
                                                     "blue", "purple", "black"]
    r = qd.run("qvm-label", "list", "--full")
    assert r.out.splitlines()[0].split() == ["NAME", "INDEX", "COLOR"]
    assert r.out.splitlines()[1].split() == ["red", "1", "0xcc0000"]
    assert qd.run("qvm-label", "get", "blue").out == "0x3465a4\n"
    assert qd.run("qvm-label", "index", "black").out == "8\n"
    assert qd.run("qvm-label", "create", "teal", "0x008080").rc == 0
    assert qd.call("admin.label.Get", arg="teal") == "0x008080"
    assert qd.run("qvm-label", "remove", "teal").rc == 0
    r = qd.run("qvm-label", "get", "teal")
    assert r.rc == 1 and r.err.startswith("qvm-label: error: ")
    r = qd.run("qvm-label", "remove", "red")
    assert r.rc == 1 and r.err.startswith("qvm-label: error: ")
    usage_error(qd.run("qvm-label", "get"), "qvm-label", "the following arguments are required: LABEL")


def test_extra_positionals_are_argparse_errors(qd):
    """Every tool that takes a fixed number of positionals names the extra ones as argparse
    does ("unrecognized arguments: a b"), exit 2 (one helper, cli_at_most, serves them all)."""
    cases = [
        (("qvm-features", "work", "f", "v", "x", "y"), "x y"),
        (("qvm-service", "work", "s", "on", "x"), "x"),
        (("qvm-prefs", "work", "label", "red", "x"), "x"),
        (("qubes-prefs", "default_netvm", "", "x"), "x"),
        (("qvm-tags", "work", "list", "a", "b"), "b"),
        (("qvm-firewall", "work", "list", "x"), "x"),
        (("qvm-clone", "work", "work2", "x"), "x"),
        (("qvm-create", "--label", "red", "n1", "n2"), "n2"),
        (("qvm-label", "list", "x"), "x"),
    ]
    for argv, extra in cases:
        usage_error(qd.run(*argv), argv[0], f"unrecognized arguments: {extra}")
