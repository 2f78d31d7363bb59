"""qubes.FeaturesRequest, qubes.NotifyTools, qubes.NotifyUpdates: a qube tells dom0 about
itself over qrexec (real qubes, real qrexec-client-vm, the default policy), and dom0
takes only what Qubes' extensions let it take (qubes/ext/core_features.py, services.py,
supported_features.py; qubes/api/misc.py). Bulkhead has no QubesDB: the KEY=VALUE pairs
Qubes' agent writes to /features-request/ are the call's payload, one per line."""
import re
import subprocess

import pytest

from admin_fixtures import AdminError, engine_daemon  # noqa: F401
from qrexec_fixtures import bin_path

CVM = "/usr/lib/bulkhead/qrexec-client-vm"


def features(d, q):
    out = {}
    for k in d.call("admin.vm.feature.List", q).splitlines():
        out[k] = d.call(f"admin.vm.feature.Get+{k}", q)
    return out


def request(d, qube, service, payload):
    """The call from inside the qube; the exit code is qrexec-client-vm's."""
    r = subprocess.run([bin_path("qvm-run"), "-p", qube, f"{CVM} dom0 {service}"], env=d.env, input=payload,
                       capture_output=True, timeout=60)
    return r


def test_template_requests_features(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.feature.Set+gui", "host", payload="")               # set already: not overridden
    d.call("admin.vm.feature.Set+supported-service.old", "host", payload="1")
    d.call("admin.vm.Start", "host")
    payload = (b"os-distribution=debian\nos-version=12\nos-eol=2028-06-30\nqrexec=1\ngui=1\nvmexec=1\n"
               b"qubes-firewall=0\nqubes-agent-version=4.3\nanon-timezone=1\n"
               b"supported-service.cups=1\nsupported-service.apparmor=1\nsupported-service.off=0\n"
               b"supported-feature.ipv6=1\nsupported-rpc.qubes.Foo=1\n"
               b"os-distribution-like=\nboot-mode.kernelopts.x=y\nunknown-key=1\n")
    r = request(d, "host", "qubes.FeaturesRequest", payload)
    assert r.returncode == 0, r.stderr
    f = features(d, "host")
    assert f == {
        "gui": "", "os-distribution": "debian", "os-version": "12", "os-eol": "2028-06-30", "qrexec": "1",
        "vmexec": "1", "qubes-firewall": "", "qubes-agent-version": "4.3", "anon-timezone": "1",
        "supported-service.cups": "1", "supported-service.apparmor": "1", "apparmor": "1",
        "supported-feature.ipv6": "1", "supported-rpc.qubes.Foo": "1",
    }, f
    # a new advertisement replaces the old set; an empty one changes nothing
    r = request(d, "host", "qubes.FeaturesRequest", b"supported-service.cups=1\nanon-timezone=0\nos-version=x1\n")
    assert r.returncode == 0
    f = features(d, "host")
    assert "supported-service.apparmor" not in f and "apparmor" not in f and f["supported-service.cups"] == "1"
    assert f["anon-timezone"] == "1" and f["os-version"] == "12"          # cannot be switched off / bad value
    assert f["supported-feature.ipv6"] == "1" and f["supported-rpc.qubes.Foo"] == "1"


def test_app_qube_changes_only_supported_rpc(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Start", "a")
    r = request(d, "a", "qubes.FeaturesRequest",
                b"qrexec=1\ngui=1\nos-distribution=evil\nsupported-service.sshd=1\nvmexec=1\n"
                b"supported-rpc.my.Service=1\n")
    assert r.returncode == 0, r.stderr
    assert features(d, "a") == {"supported-rpc.my.Service": "1"}


def test_hostile_requests_are_refused_whole(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Start", "host")
    hostile = [
        b"os-distribution=$(reboot)\n",                  # outside the safe set
        b"os-distribution=deb\xffian\n",                 # not ASCII
        b"novalue\n",
        b"bad/key=1\n",
        b"=1\n",
        b"k" * 65 + b"=1\n",
        b"k=" + b"v" * 1025 + b"\n",
        b"".join(b"k%d=1\n" % i for i in range(257)),
        b"supported-service.x=1\nos-version=12\x00\n",
    ]
    for p in hostile:
        r = request(d, "host", "qubes.FeaturesRequest", p)
        assert r.returncode != 0, p
    assert features(d, "host") == {}
    # control: the same channel works with a well-formed request
    assert request(d, "host", "qubes.FeaturesRequest", b"os-distribution=debian\n").returncode == 0
    assert features(d, "host") == {"os-distribution": "debian"}
    # raw Admin API: Qubes' reasons
    with pytest.raises(AdminError) as e:
        d.call("qubes.FeaturesRequest", "dom0", payload=b"os=a;b\n".replace(b"dom0", b""))
    assert e.value.exc_type == "PermissionDenied"                        # dom0 itself asks nothing
    out = d.raw(b"qubes.FeaturesRequest+ host name dom0\0os-distribution=a;b\n")
    assert out.startswith(b"2\0PermissionDenied\0") and b"Value outside safe set" in out
    out = d.raw(b"qubes.FeaturesRequest+ host name a\0")
    assert out.startswith(b"2\0PermissionDenied\0")                        # only to dom0


def test_notify_tools(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Start", "host")
    r = request(d, "host", "qubes.NotifyTools", b"qrexec=1\ngui=1\nos=Windows\nvmexec=1\n")
    assert r.returncode == 0, r.stderr
    assert features(d, "host") == {"qrexec": "1", "gui": "1"}              # vmexec is not a NotifyTools key
    r = request(d, "host", "qubes.NotifyTools", b"default-user=us-er\n")   # letters and digits only
    assert r.returncode != 0


def test_notify_updates(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Start", "a")
    # an app qube speaks for its halted template
    assert request(d, "a", "qubes.NotifyUpdates", b"0\n").returncode == 0
    assert features(d, "host") == {}                                      # "no updates" says nothing
    assert request(d, "a", "qubes.NotifyUpdates", b" 3\n").returncode == 0
    f = features(d, "host")
    assert f["updates-available"] == "1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", f["last-updates-check"])
    assert features(d, "a") == {}
    # the template itself, running: its own word, and last-update when updates are gone
    d.call("admin.vm.Start", "host")
    assert request(d, "a", "qubes.NotifyUpdates", b"5").returncode == 0    # template running: ignored
    assert request(d, "host", "qubes.NotifyUpdates", b"0").returncode == 0
    f = features(d, "host")
    assert f["updates-available"] == "" and "last-update" in f
    for bad in (b"", b"-1", b"1e3", b"x", b"1 2"):
        assert request(d, "host", "qubes.NotifyUpdates", bad).returncode != 0, bad
    out = d.raw(b"qubes.NotifyUpdates+ host name dom0\0nope")
    assert out == b"2\0PermissionDenied\0\0Update count is not a digit\0"
