"""The Admin API, driven with raw bytes on a real bulkheadd (docs/admin.md)."""
import os
import socket
import time

import pytest

from admin_fixtures import AdminError, Daemon, daemon, bare_daemon, parse_reply  # noqa: F401


def names(d):
    return [line.split(" ")[0] for line in d.call("admin.vm.List").splitlines()]


def test_default_layout(daemon):
    assert names(daemon) == ["default-dvm", "dom0", "host", "personal", "sys-firewall", "sys-net", "untrusted", "vault", "work"]
    assert daemon.call("admin.vm.property.Get+label", "work") == "default=False type=label blue"
    assert daemon.call("admin.vm.property.Get+label", "personal") == "default=False type=label yellow"
    assert daemon.call("admin.vm.property.Get+label", "untrusted") == "default=False type=label red"
    assert daemon.call("admin.vm.property.Get+netvm", "vault") == "default=False type=vm "
    assert daemon.call("admin.vm.property.Get+template", "work") == "default=False type=vm host"
    assert daemon.call("admin.vm.property.Get+netvm", "work") == "default=False type=vm sys-firewall"
    assert daemon.call("admin.vm.property.Get+provides_network", "sys-net") == "default=False type=bool True"
    assert daemon.call("admin.property.Get+default_template") == "default=False type=vm host"
    assert daemon.call("admin.property.Get+default_dispvm") == "default=False type=vm default-dvm"
    line = [l for l in daemon.call("admin.vm.List").splitlines() if l.startswith("work ")][0]
    assert "class=AppVM" in line and "state=Halted" in line and "uuid=" in line


def test_list_one_and_uuid_dest(daemon):
    out = daemon.call("admin.vm.List", "work")
    assert out.startswith("work class=AppVM state=Halted uuid=") and out.endswith("\n") and out.count("\n") == 1
    uuid = out.split("uuid=")[1].strip()
    assert daemon.call("admin.vm.property.Get+name", "uuid:" + uuid) == "default=False type=str work"


def test_wire_bytes_exact(daemon):
    assert daemon.raw(b"admin.vm.property.Get+memory dom0 name work\0") == b"0\0default=True type=int 400"
    assert daemon.raw(b"admin.vm.Nosuch+ dom0 name dom0\0") == b"2\0ProtocolError\0\0no such method: 'admin.vm.Nosuch'\0"
    assert daemon.raw(b"admin.vm.List+ dom0 name nosuchvm\0") == b"2\0QubesVMNotFoundError\0\0No such domain: 'nosuchvm'\0"
    assert daemon.raw(b"admin.vm.property.Get+nosuchprop dom0 name work\0") == \
        b"2\0QubesNoSuchPropertyError\0\0Invalid property 'nosuchprop' of work\0"
    assert daemon.raw(b"admin.vm.List+ dom0 keyword adminvm\0").startswith(b"0\0default-dvm class=AppVM")
    assert daemon.raw(b"admin.label.List+ dom0 name dom0\0") == b"0\0red\norange\nyellow\ngreen\ngray\nblue\npurple\nblack\n"


def test_percent_is_escaped(daemon):
    out = daemon.raw(b"admin.vm.property.Get+x%s dom0 name work\0")
    assert out == b"2\0QubesNoSuchPropertyError\0\0Invalid property 'x%%s' of work\0"


def test_labels(daemon):
    assert daemon.call("admin.label.Get+red") == "0xcc0000"
    assert daemon.call("admin.label.Index+black") == "8"
    assert daemon.call("admin.label.Index+blue") == "6"
    with pytest.raises(AdminError) as e:
        daemon.call("admin.label.Get+nosuch")
    assert e.value.exc_type == "QubesLabelNotFoundError"
    daemon.call("admin.label.Create+pink", payload="0xFF00ff")
    assert daemon.call("admin.label.Get+pink") == "0xff00ff"
    assert daemon.call("admin.label.Index+pink") == "9"
    with pytest.raises(AdminError):
        daemon.call("admin.label.Create+pink2", payload="red")
    daemon.call("admin.vm.Create.AppVM+host", payload="name=p label=pink")
    with pytest.raises(AdminError):
        daemon.call("admin.label.Remove+pink")
    daemon.call("admin.vm.Remove", "p")
    daemon.call("admin.label.Remove+pink")
    with pytest.raises(AdminError) as e:
        daemon.call("admin.label.Remove+red")
    assert e.value.exc_type == "PermissionDenied"


def test_property_types_and_validation(daemon):
    daemon.call("admin.vm.property.Set+memory", "work", "800")
    assert daemon.call("admin.vm.property.Get+memory", "work") == "default=False type=int 800"
    for bad in ["abc", "-5", "0", "", "1e3", "08", " 5", "99999999999"]:
        with pytest.raises(AdminError) as e:
            daemon.call("admin.vm.property.Set+memory", "work", bad)
        # QubesPropertyValueError: Qubes' subclass of QubesValueError ("must be positive")
        assert e.value.exc_type in ("QubesValueError", "QubesPropertyValueError"), bad
    assert daemon.call("admin.vm.property.Get+memory", "work") == "default=False type=int 800"
    daemon.call("admin.vm.property.Reset+memory", "work")
    assert daemon.call("admin.vm.property.Get+memory", "work") == "default=True type=int 400"
    for v, want in [("true", "True"), ("0", "False"), ("yes", "True"), ("False", "False")]:
        daemon.call("admin.vm.property.Set+autostart", "work", v)
        assert daemon.call("admin.vm.property.Get+autostart", "work") == f"default=False type=bool {want}"
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Set+autostart", "work", "maybe")
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.property.Set+label", "work", "nosuch")
    assert e.value.exc_type == "QubesLabelNotFoundError"
    for ro in ["qid", "uuid", "name", "klass", "xid"]:
        with pytest.raises(AdminError):
            daemon.call(f"admin.vm.property.Set+{ro}", "work", "1")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Set+vcpus", "work", "100000")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Set+mac", "work", "zz:16:3e:5e:6c:00")
    daemon.call("admin.vm.property.Set+mac", "work", "00:16:3e:5e:6c:01")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Set+kernelopts", "work", "a\nb")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Set+virt_mode", "work", "xen")


def test_getdefault_help_list(daemon):
    assert daemon.call("admin.vm.property.GetDefault+memory", "work") == "type=int 400"
    assert daemon.call("admin.vm.property.GetDefault+netvm", "work") == "type=vm sys-firewall"
    assert daemon.call("admin.vm.property.GetDefault+label", "work") == ""
    assert daemon.call("admin.vm.property.GetDefault+netvm", "sys-net") == "type=vm "
    props = daemon.call("admin.vm.property.List", "work").splitlines()
    assert props == sorted(props) and "netvm" in props and "template" in props
    assert "template" not in daemon.call("admin.vm.property.List", "host").splitlines()
    assert daemon.call("admin.vm.property.Help+memory", "work")
    glob = daemon.call("admin.property.List").splitlines()
    assert "default_template" in glob and "clockvm" in glob


def test_getall_escapes(daemon):
    daemon.call("admin.vm.property.Set+kernelopts", "work", "a\\b")
    line = [l for l in daemon.call("admin.vm.property.GetAll", "work").splitlines() if l.startswith("kernelopts ")][0]
    assert line == "kernelopts default=False type=str a\\\\b"


def test_netvm_rules(daemon):
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.property.Set+netvm", "work", "personal")
    assert "does not provide network" in e.value.msg
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.property.Set+netvm", "sys-net", "sys-firewall")
    assert "Loops" in e.value.msg
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Set+netvm", "sys-net", "sys-net")
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.property.Set+netvm", "work", "nosuch")
    assert e.value.exc_type == "QubesVMNotFoundError"
    daemon.call("admin.vm.property.Set+netvm", "work", "")
    assert daemon.call("admin.vm.property.Get+netvm", "work") == "default=False type=vm "
    assert daemon.call("admin.vm.property.Get+ip", "work") == "default=True type=str "
    daemon.call("admin.vm.property.Set+netvm", "work", "sys-net")
    qid = int(daemon.call("admin.vm.property.Get+qid", "work").split()[-1])
    assert daemon.call("admin.vm.property.Get+ip", "work") == f"default=True type=str 10.137.{qid >> 8}.{qid & 255}"
    # a netvm in use cannot stop providing network, nor be removed
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Set+provides_network", "sys-net", "False")
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.Remove", "sys-net")
    assert e.value.exc_type == "QubesVMInUseError"


def test_create_and_remove(daemon):
    daemon.call("admin.vm.Create.AppVM+host", payload="name=new1 label=green")
    assert "new1" in names(daemon)
    assert daemon.call("admin.vm.property.Get+label", "new1") == "default=False type=label green"
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.Create.AppVM+host", payload="name=new1 label=green")
    assert e.value.exc_type == "QubesVMAlreadyExistsError"
    for bad in ["name=1abc label=red", "name=a/b label=red", "name=none label=red", "name=x-dm label=red",
                "name=" + "a" * 32 + " label=red", "name=ok label=nosuch", "name=ok", "label=red",
                "name=ok label=red extra=1", "name=ok label=red name=ok2"]:
        with pytest.raises(AdminError):
            daemon.call("admin.vm.Create.AppVM+host", payload=bad)
    assert "ok" not in names(daemon)
    with pytest.raises(AdminError):
        daemon.call("admin.vm.Create.AppVM+work", payload="name=t label=red")  # not a template
    with pytest.raises(AdminError):
        daemon.call("admin.vm.Create.TemplateVM+host", payload="name=t label=red")
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.Create.AppVM+host", "work", payload="name=t label=red")
    assert e.value.exc_type == "PermissionDenied"
    daemon.call("admin.vm.Create.TemplateVM", payload="name=tpl label=black")
    daemon.call("admin.vm.Create.StandaloneVM", payload="name=sa label=purple")
    daemon.call("admin.vm.CreateInPool.AppVM+tpl", payload="name=onpool label=red pool=default")
    assert daemon.call("admin.vm.List", "sa").startswith("sa class=StandaloneVM")
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.Remove", "tpl")
    assert e.value.exc_type == "QubesVMInUseError"
    daemon.call("admin.vm.Remove", "onpool")
    daemon.call("admin.vm.Remove", "tpl")
    daemon.call("admin.vm.Remove", "new1")
    assert "new1" not in names(daemon)
    with pytest.raises(AdminError):
        daemon.call("admin.vm.Remove", "dom0")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.Remove", "host")  # default_template and used by qubes


def test_qid_ip_allocation(bare_daemon):
    """The lowest free qid from the daemon's base (--qid-base), reused after a remove."""
    d = bare_daemon
    b = d.qid_base
    d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
    d.call("admin.vm.Create.AppVM+t", payload="name=a label=red")
    d.call("admin.vm.Create.AppVM+t", payload="name=b label=red")
    assert d.call("admin.vm.property.Get+qid", "t") == f"default=False type=int {b}"
    assert d.call("admin.vm.property.Get+qid", "a") == f"default=False type=int {b + 1}"
    d.call("admin.vm.Remove", "a")
    d.call("admin.vm.Create.AppVM+t", payload="name=c label=red")
    assert d.call("admin.vm.property.Get+qid", "c") == f"default=False type=int {b + 1}"
    u1 = d.call("admin.vm.property.Get+uuid", "b").split()[-1]
    u2 = d.call("admin.vm.property.Get+uuid", "c").split()[-1]
    assert u1 != u2 and len(u1) == 36


def test_disposable(daemon):
    name = daemon.call("admin.vm.CreateDisposable", "default-dvm")
    assert name.startswith("disp")
    assert daemon.call("admin.vm.List", name).startswith(f"{name} class=DispVM")
    assert daemon.call("admin.vm.property.Get+template", name) == "default=False type=vm default-dvm"
    qid = int(daemon.call("admin.vm.property.Get+qid", name).split()[-1])
    assert daemon.call("admin.vm.property.Get+ip", name).endswith(f"10.138.{qid >> 8}.{qid & 255}")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.CreateDisposable", "work")  # not a disposable template
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Set+template_for_dispvms", "default-dvm", "False")
    daemon.call("admin.vm.Remove", name)


def test_tags(daemon):
    assert daemon.call("admin.vm.tag.List", "work") == ""
    daemon.call("admin.vm.tag.Set+project-x", "work")
    assert daemon.call("admin.vm.tag.Get+project-x", "work") == "1"
    assert daemon.call("admin.vm.tag.Get+other", "work") == "0"
    assert daemon.call("admin.vm.tag.List", "work") == "project-x\n"
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.tag.Remove+other", "work")
    assert e.value.exc_type == "QubesTagNotFoundError"
    with pytest.raises(AdminError):
        daemon.call("admin.vm.tag.Set+bad/tag", "work")
    daemon.call("admin.vm.tag.Remove+project-x", "work")
    assert daemon.call("admin.vm.tag.List", "work") == ""


def test_features(daemon):
    daemon.call("admin.vm.feature.Set+service.cups", "host", "1")
    daemon.call("admin.vm.feature.Set+gui", "work", "")
    assert daemon.call("admin.vm.feature.Get+gui", "work") == ""
    assert daemon.call("admin.vm.feature.List", "work") == "gui\n"
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.feature.Get+service.cups", "work")
    assert e.value.exc_type == "QubesFeatureNotFoundError"
    assert daemon.call("admin.vm.feature.CheckWithTemplate+service.cups", "work") == "1"
    daemon.call("admin.vm.feature.Set+x", "dom0", "adm")
    assert daemon.call("admin.vm.feature.CheckWithAdminVM+x", "work") == "adm"
    with pytest.raises(AdminError):
        daemon.call("admin.vm.feature.Set+x", "work", "\x1b[31m")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.feature.Set+bad/name", "work", "1")
    daemon.call("admin.vm.feature.Remove+gui", "work")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.feature.Remove+gui", "work")


def test_notes(daemon):
    assert daemon.call("admin.vm.notes.Get", "work") == ""
    daemon.call("admin.vm.notes.Set", "work", "line 1\nline 2 ✓")
    assert daemon.call("admin.vm.notes.Get", "work") == "line 1\nline 2 ✓"
    with pytest.raises(AdminError):
        daemon.call("admin.vm.notes.Set", "work", "esc \x1b]0;x\x07")


def test_firewall(daemon):
    assert daemon.call("admin.vm.firewall.Get", "work") == "action=accept\n"
    daemon.call("admin.vm.firewall.Set", "work", "action=accept dst4=1.2.3.4 proto=tcp dstports=443\naction=drop\n")
    assert daemon.call("admin.vm.firewall.Get", "work") == \
        "action=accept dst4=1.2.3.4/32 proto=tcp dstports=443-443\naction=drop\n"
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.firewall.Set", "work", "action=accept dst4=1.2.3.4/8\n")
    assert e.value.exc_type == "QubesValueError"
    assert daemon.call("admin.vm.firewall.Get", "work").endswith("action=drop\n")
    daemon.call("admin.vm.firewall.Reload", "work")


def test_global_properties(daemon):
    with pytest.raises(AdminError):
        daemon.call("admin.property.Set+default_template", payload="work")
    with pytest.raises(AdminError):
        daemon.call("admin.property.Set+default_netvm", payload="work")
    with pytest.raises(AdminError):
        daemon.call("admin.property.Get+default_template", "work")  # must be dom0
    daemon.call("admin.property.Set+default_qrexec_timeout", payload="30")
    assert daemon.call("admin.vm.property.Get+qrexec_timeout", "work") == "default=True type=int 30"
    daemon.call("admin.property.Reset+default_qrexec_timeout")
    assert daemon.call("admin.property.Get+default_qrexec_timeout") == "default=True type=int 60"
    assert daemon.call("admin.vmclass.List") == "AdminVM\nAppVM\nDispVM\nStandaloneVM\nTemplateVM\n"


def test_lifecycle_state(daemon):
    assert daemon.call("admin.vm.CurrentState", "work") == "mem=0 mem_static_max=0 cputime=0 power_state=Halted"


def test_argument_rules(daemon):
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.List+x")
    assert e.value.exc_type == "PermissionDenied"
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Get", "work")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.Remove", "work", payload="x")


def _recv_events(s, want, timeout=10):
    s.settimeout(timeout)
    buf = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(w in buf for w in want):
            return buf
        buf += s.recv(65536)
    return buf


def test_events(daemon):
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.sock)
    s.sendall(b"admin.Events+ dom0 name dom0\0")
    s.shutdown(socket.SHUT_WR)
    buf = _recv_events(s, [b"connection-established"])
    assert buf.startswith(b"1\0\0connection-established\0\0")
    daemon.call("admin.vm.Create.AppVM+host", payload="name=ev label=red")
    daemon.call("admin.vm.property.Set+memory", "ev", "500")
    daemon.call("admin.vm.tag.Set+t1", "ev")
    daemon.call("admin.vm.feature.Set+f1", "ev", "v")
    daemon.call("admin.vm.property.Reset+memory", "ev")
    daemon.call("admin.vm.Remove", "ev")
    buf = _recv_events(s, [b"domain-delete"])
    assert b"1\0\0domain-add\0vm\0ev\0\0" in buf
    assert b"1\0ev\0property-set:memory\0name\0memory\0newvalue\x00500\0oldvalue\x00400\0\0" in buf
    assert b"1\0ev\0domain-tag-add:t1\0tag\0t1\0\0" in buf
    assert b"1\0ev\0domain-feature-set:f1\0feature\0f1\0value\0v\0\0" in buf
    assert b"1\0ev\0property-del:memory\0" in buf
    assert b"1\0\0domain-delete\0vm\0ev\0\0" in buf
    s.close()


def test_events_filtered_by_qube(daemon):
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.sock)
    s.sendall(b"admin.Events+ dom0 name work\0")
    s.shutdown(socket.SHUT_WR)
    _recv_events(s, [b"connection-established"])
    daemon.call("admin.vm.property.Set+memory", "personal", "500")
    daemon.call("admin.vm.property.Set+memory", "work", "501")
    buf = _recv_events(s, [b"501"])
    assert b"personal" not in buf and b"property-set:memory" in buf
    s.close()


# ---- hostile input ----

def test_malformed_frames_dropped(daemon):
    for bad in [b"", b"garbage", b"admin.vm.List dom0 name dom0\0", b"admin.vm.List+ dom0 name\0",
                b"admin.vm.List+ dom0 badtype dom0\0", b"admin.vm.List+ dom0 keyword nosuch\0",
                b"admin.vm.List+ dom0 name dom0", b"\xff\xfe+ a name b\0", b"a+b c name d e\0"]:
        assert daemon.raw(bad) == b"", bad
    assert names(daemon)  # still serving


def test_oversized_payload_dropped(daemon):
    big = b"admin.vm.notes.Set+ dom0 name work\0" + b"a" * (70 * 1024)
    try:
        out = daemon.raw(big)
    except (BrokenPipeError, ConnectionResetError):
        out = b""
    assert out == b""
    assert daemon.call("admin.vm.notes.Get", "work") == ""
    ok = b"admin.vm.notes.Set+ dom0 name work\0" + b"a" * (60 * 1024)
    assert daemon.raw(ok) == b"0\0"


def test_nul_in_payload_refused(daemon):
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Set+kernelopts", "work", b"a\0b")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.Create.AppVM+host", payload=b"name=x\0y label=red")


def test_abandoned_and_slow_clients_do_not_stall(daemon):
    # many connections that never finish their request
    idle = []
    for _ in range(50):
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.sock)
        s.sendall(b"admin.vm.List+ dom0 na")
        idle.append(s)
    # an events client that never reads
    ev = socket.socket(socket.AF_UNIX)
    ev.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ev.connect(daemon.sock)
    ev.sendall(b"admin.Events+ dom0 name dom0\0")
    ev.shutdown(socket.SHUT_WR)
    t0 = time.time()
    for i in range(200):
        daemon.call("admin.vm.property.Set+memory", "work", str(400 + i))
    assert time.time() - t0 < 60
    assert names(daemon)
    # a client that connects and closes at once
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.sock)
        s.close()
    assert names(daemon)
    for s in idle:
        s.close()
    ev.close()


def test_abandoned_connection_is_dropped(daemon):
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.sock)
    s.sendall(b"admin.vm.List+ dom0 name dom0")  # no NUL, never half-closes
    s.settimeout(30)
    assert s.recv(10) == b""  # the daemon hangs up after its request deadline
    s.close()


def test_persistence_across_restart(tmp_path):
    d = Daemon(tmp_path, extra_args=["--no-autostart"]).start()
    d.call("admin.vm.Create.AppVM+host", payload="name=keep label=purple")
    d.call("admin.vm.property.Set+memory", "keep", "1234")
    d.call("admin.vm.tag.Set+t", "keep")
    d.call("admin.vm.feature.Set+f", "keep", "v")
    d.call("admin.vm.notes.Set", "keep", "n")
    d.call("admin.vm.firewall.Set", "keep", "action=drop\n")
    d.call("admin.property.Set+default_qrexec_timeout", payload="77")
    d.call("admin.label.Create+pink", payload="0xff00ff")
    uuid = d.call("admin.vm.property.Get+uuid", "keep")
    d.stop()
    d.start()
    assert d.call("admin.vm.property.Get+memory", "keep") == "default=False type=int 1234"
    assert d.call("admin.vm.property.Get+uuid", "keep") == uuid
    assert d.call("admin.vm.tag.List", "keep") == "audiovm-dom0\ncreated-by-dom0\nguivm-dom0\nt\n"  # Qubes adds these three
    assert d.call("admin.vm.feature.Get+f", "keep") == "v"
    assert d.call("admin.vm.notes.Get", "keep") == "n"
    assert d.call("admin.vm.firewall.Get", "keep") == "action=drop\n"
    assert d.call("admin.property.Get+default_qrexec_timeout") == "default=False type=int 77"
    assert d.call("admin.label.Index+pink") == "9"
    # the default layout is not created again over a user's changes
    d.call("admin.vm.Remove", "untrusted")
    d.stop()
    d.start()
    assert "untrusted" not in names(d)
    d.stop()


def test_second_daemon_refuses_live_socket(tmp_path, daemon):
    import subprocess
    from admin_fixtures import BUILD
    r = subprocess.run([str(BUILD / "src/admin/bulkheadd"), "--root", str(tmp_path / "other"),
                        "--runtime-dir", str(daemon.runtime)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "already listening" in r.stderr
    assert names(daemon)


def test_system_info_for_policy(daemon):
    daemon.call("admin.vm.tag.Set+proj", "work")
    daemon.call("admin.vm.tag.Set+alpha", "work")
    lines = {l.split()[0]: l for l in daemon.call("internal.GetSystemInfo").splitlines()}
    assert set(lines) == set(names(daemon))
    assert lines["work"].startswith("work AppVM uuid=") and " state=Halted" in lines["work"]
    assert " tags=alpha,proj" in lines["work"] and " default_dispvm=default-dvm" in lines["work"]
    assert " template=host" in lines["work"] and lines["work"].endswith("template_for_dispvms=no")
    assert lines["default-dvm"].endswith("template_for_dispvms=yes")
    assert lines["dom0"].startswith("dom0 AdminVM")
    # only dom0's own components may ask: a qube's forwarded call is refused
    out = daemon.raw(b"internal.GetSystemInfo+ work name dom0\0")
    assert out.startswith(b"2\0PermissionDenied\0")
