"""qvm-ls against a real bulkheadd: Qubes' columns, formats, filters and errors."""
import re

from tools_fixtures import qd, usage_error, TOOLS  # noqa: F401

DEFAULT_QUBES = ["default-dvm", "dom0", "host", "personal", "sys-firewall", "sys-net",
                 "untrusted", "vault", "work"]


def cells(line):
    return re.split(r"\s{2,}", line.strip())


def test_default_table(qd):
    r = qd.run("qvm-ls")
    assert r.rc == 0 and r.err == ""
    lines = r.out.splitlines()
    assert cells(lines[0]) == ["NAME", "STATE", "CLASS", "LABEL", "TEMPLATE", "NETVM"]
    rows = {cells(l)[0]: cells(l) for l in lines[1:]}
    assert sorted(rows) == DEFAULT_QUBES
    assert rows["work"] == ["work", "Halted", "AppVM", "blue", "host", "sys-firewall"]
    assert rows["vault"] == ["vault", "Halted", "AppVM", "black", "host", "-"]
    assert rows["dom0"] == ["dom0", "Running", "AdminVM", "black", "-", "-"]
    assert rows["host"][:5] == ["host", "Halted", "TemplateVM", "black", "-"]
    # column -t layout: every column but the last is padded to its widest cell + 2.
    width = max(len(n) for n in DEFAULT_QUBES)
    assert lines[0].startswith("NAME" + " " * (width - 4 + 2) + "STATE")
    assert all(not l.endswith(" ") for l in lines)


def test_raw_list_and_raw_data(qd):
    r = qd.run("qvm-ls", "--raw-list")
    assert r.rc == 0 and r.out.splitlines() == DEFAULT_QUBES
    r = qd.run("qvm-ls", "--raw-data", "-O", "name,label,netvm,qid", "work", "vault")
    assert r.rc == 0
    lines = r.out.splitlines()
    assert lines[0].startswith("vault|black|-|") and lines[1].startswith("work|blue|sys-firewall|")
    qid = qd.call("admin.vm.property.Get", "work", arg="qid").split(" ", 2)[2]
    assert lines[1] == f"work|blue|sys-firewall|{qid}"


def test_fields_and_formats(qd):
    r = qd.run("qvm-ls", "--fields=name,virt_mode,memory,flags", "sys-net")
    assert r.rc == 0
    assert cells(r.out.splitlines()[0]) == ["NAME", "VIRT-MODE", "MEMORY", "FLAGS"]
    row = cells(r.out.splitlines()[1])
    # sys-net: an app qube ('a'), running or not, provides network (N), autostarts (A).
    auto = qd.call("admin.vm.property.Get", "sys-net", arg="autostart").endswith("True")
    power = "r" if qd.state("sys-net") == "Running" else "-"
    assert row[0] == "sys-net" and row[3] == "a" + power + "-N---" + ("A" if auto else "-")
    if power == "-":
        assert row[2] == "-"       # MEMORY only for running qubes
    else:
        mem = int(qd.call("admin.vm.CurrentState", "sys-net").split("mem=")[1].split()[0])
        assert row[2] == str(mem // 1024)
    r = qd.run("qvm-ls", "-n", "work")
    assert cells(r.out.splitlines()[0]) == ["NAME", "STATE", "NETVM", "IP", "IPBACK", "GATEWAY"]
    ip = qd.call("admin.vm.property.Get", "work", arg="ip").split(" ", 2)[2]
    assert cells(r.out.splitlines()[1])[:4] == ["work", "Halted", "sys-firewall", ip]
    r = qd.run("qvm-ls", "--help-formats")
    assert r.rc == 0 and "simple   NAME,STATE,CLASS,LABEL,TEMPLATE,NETVM" in r.out
    r = qd.run("qvm-ls", "--format", "bogus")
    usage_error(r, "qvm-ls", "argument --format/-o: invalid choice: 'bogus' (choose from "
                "'simple', 'network', 'kernel', 'full', 'prefs', 'disk')")
    r = qd.run("qvm-ls", "--format", "full", "--fields", "name")
    assert r.rc == 2


def test_filters(qd):
    r = qd.run("qvm-ls", "--raw-list", "--class", "TemplateVM", "AdminVM")
    assert r.out.splitlines() == ["dom0", "host"]
    running = qd.running()
    r = qd.run("qvm-ls", "--raw-list", "--running")
    assert r.out.splitlines() == running and "dom0" in running
    r = qd.run("qvm-ls", "--raw-list", "--halted")
    assert r.out.splitlines() == [q for q in DEFAULT_QUBES if q not in running]
    r = qd.run("qvm-ls", "--raw-list", "--label", "red")
    assert r.out.splitlines() == ["default-dvm", "sys-net", "untrusted"]
    assert qd.run("qvm-tags", "personal", "add", "ls-tag").rc == 0
    r = qd.run("qvm-ls", "--raw-list", "--tags", "ls-tag", "nosuchtag")
    assert r.out.splitlines() == ["personal"]
    r = qd.run("qvm-ls", "--raw-list", "--exclude-tags", "ls-tag", "--class", "AppVM")
    assert "personal" not in r.out.splitlines() and "work" in r.out.splitlines()
    r = qd.run("qvm-ls", "--raw-list", "--netvm-is", "sys-net")
    assert r.out.splitlines() == ["sys-firewall"]
    r = qd.run("qvm-ls", "--raw-list", "--prefs", "netvm=", "--class", "AppVM")
    assert r.out.splitlines() == ["sys-net", "vault"]
    assert qd.run("qvm-features", "untrusted", "ls-feat", "x").rc == 0
    r = qd.run("qvm-ls", "--raw-list", "--features", "ls-feat=x")
    assert r.out.splitlines() == ["untrusted"]
    r = qd.run("qvm-ls", "--raw-list", "--all", "--exclude", "dom0", "--exclude", "work")
    assert r.out.splitlines() == [q for q in DEFAULT_QUBES if q not in ("dom0", "work")]


def test_sort_and_tree(qd):
    r = qd.run("qvm-ls", "-O", "name,label", "--sort", "label", "--class", "AppVM")
    labels = [cells(l)[1] for l in r.out.splitlines()[1:]]
    assert labels == sorted(labels)
    r2 = qd.run("qvm-ls", "-O", "name,label", "--sort", "label", "--reverse", "--class", "AppVM")
    assert [cells(l)[1] for l in r2.out.splitlines()[1:]] == sorted(labels, reverse=True)
    r = qd.run("qvm-ls", "--tree", "-O", "name")
    names = [l.rstrip() for l in r.out.splitlines()[1:]]
    assert "└─sys-firewall" in names and "  └─work" in names
    assert names.index("sys-net") < names.index("└─sys-firewall") < names.index("  └─work")


def test_errors(qd, tmp_path):
    r = qd.run("qvm-ls", "nosuchqube")
    usage_error(r, "qvm-ls", "no such domain: 'nosuchqube'")
    r = qd.run("qvm-ls", "--bogus")
    usage_error(r, "qvm-ls", "unrecognized arguments: --bogus")
    r = qd.run("qvm-ls", "--exclude", "work")
    usage_error(r, "qvm-ls", "--exclude can only be used with --all")
    r = qd.run("qvm-ls", "--tags")
    usage_error(r, "qvm-ls", "argument --tags: expected at least one argument")
    env = dict(qd.env, BULKHEAD_SOCKET=str(tmp_path / "nothing.sock"))
    r = qd.run("qvm-ls", env=env)
    assert r.rc == 1 and "Failed to connect to qubesd service" in r.err and r.out == ""


def test_multicall_names(qd):
    import subprocess
    for argv in (["qvm", "ls", "--raw-list"], ["qvm", "qvm-ls", "--raw-list"]):
        p = subprocess.run([str(TOOLS / argv[0]), *argv[1:]], env=qd.env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.splitlines() == DEFAULT_QUBES
    p = subprocess.run([str(TOOLS / "qvm"), "nosuchtool"], capture_output=True, text=True)
    assert p.returncode == 2 and "qvm-ls" in p.stderr


def test_many_qubes_every_row_its_own_properties(qd):
    # qvm-ls fetches the qubes' properties with several requests in flight (16 at most):
    # with 3x that many qubes, every row must still show its own qube's values.
    names = [f"many-{i:02d}" for i in range(48)]
    labels = ["red", "orange", "yellow", "green", "gray", "blue", "purple", "black"]
    try:
        for i, n in enumerate(names):
            qd.call("admin.vm.Create.AppVM", arg="host", payload=f"name={n} label={labels[i % 8]}")
            qd.call("admin.vm.property.Set", n, arg="maxmem", payload=str(3000 + i))
        r = qd.run("qvm-ls", "--raw-data", "-O", "name,label,maxmem,template")
        assert r.rc == 0 and r.err == ""
        rows = {line.split("|")[0]: line for line in r.out.splitlines()}
        for i, n in enumerate(names):
            assert rows[n] == f"{n}|{labels[i % 8]}|{3000 + i}|host"
        assert sorted(rows) == sorted(DEFAULT_QUBES + names)
    finally:
        for n in names:
            try:
                qd.call("admin.vm.Remove", n)
            except AssertionError:
                pass
