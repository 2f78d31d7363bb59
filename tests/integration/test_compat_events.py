"""Events and automatic tags as qubesd sends them (qubes/__init__.py property,
qubes/features.py, qubes/app.py, qubes/api/admin.py, qubes/ext/gui.py and audio.py):
property-pre-set/-set with oldvalue only when there was one, property-pre-reset,
-pre-del, -reset, -del on a reset (also of an unset property), property-reset:icon on
a label change, domain-feature-pre-set/-pre-delete, domain-create-on-disk,
domain-pre-delete, and the tags created-by-dom0, guivm-dom0, audiovm-dom0."""
from admin_fixtures import bare_daemon  # noqa: F401
from event_fixtures import drain, subscribe as events


def test_events_and_tags(bare_daemon):
    d = bare_daemon
    ev = events(d)
    d.call("admin.vm.Create.TemplateVM", payload="name=tpl label=black")
    buf = drain(ev, b"\0tpl\0domain-create-on-disk\0")
    assert b"1\0\0domain-add\0vm\0tpl\0\0" in buf
    assert b"1\0tpl\0domain-tag-add:created-by-dom0\0tag\0created-by-dom0\0\0" in buf
    assert b"1\0tpl\0domain-tag-add:guivm-dom0\0tag\0guivm-dom0\0\0" in buf
    assert b"1\0tpl\0domain-create-on-disk\0\0" in buf
    assert buf.index(b"domain-add") < buf.index(b"created-by-dom0") < buf.index(b"domain-create-on-disk")
    assert d.call("admin.vm.tag.List", "tpl") == "audiovm-dom0\ncreated-by-dom0\nguivm-dom0\n"

    d.call("admin.vm.property.Set+memory", "tpl", "500")
    buf = drain(ev, b"property-set:memory")
    assert (b"1\0tpl\0property-pre-set:memory\0name\0memory\0newvalue\x00500\0oldvalue\x00400\0\0"
            b"1\0tpl\0property-set:memory\0name\0memory\0newvalue\x00500\0oldvalue\x00400\0\0") in buf
    d.call("admin.vm.property.Reset+memory", "tpl")
    buf = drain(ev, b"property-del:memory\0name\0memory\0oldvalue\x00500\0\0")
    assert (b"1\0tpl\0property-pre-reset:memory\0name\0memory\0oldvalue\x00500\0\0"
            b"1\0tpl\0property-pre-del:memory\0name\0memory\0oldvalue\x00500\0\0"
            b"1\0tpl\0property-reset:memory\0name\0memory\0oldvalue\x00500\0\0"
            b"1\0tpl\0property-del:memory\0name\0memory\0oldvalue\x00500\0\0") in buf
    d.call("admin.vm.property.Reset+vcpus", "tpl")          # never set: events all the same
    assert b"1\0tpl\0property-reset:vcpus\0name\0vcpus\0oldvalue\x002\0\0" in drain(ev, b"property-del:vcpus")

    d.call("admin.vm.property.Set+label", "tpl", "red")
    assert b"1\0tpl\0property-reset:icon\0name\0icon\0\0" in drain(ev, b"property-reset:icon")

    d.call("admin.vm.Create.AppVM+tpl", payload="name=gui label=red")
    d.call("admin.property.Set+default_audiovm", payload="gui")  # follows the global default
    assert "audiovm-gui" in d.call("admin.vm.tag.List", "tpl").split()
    d.call("admin.property.Reset+default_audiovm")
    assert "audiovm-dom0" in d.call("admin.vm.tag.List", "tpl").split()
    d.call("admin.vm.Remove", "gui")
    d.call("admin.vm.property.Set+guivm", "tpl", "")        # no GUI VM: no guivm- tag
    drain(ev, b"domain-tag-delete:guivm-dom0")
    assert d.call("admin.vm.tag.List", "tpl") == "audiovm-dom0\ncreated-by-dom0\n"

    d.call("admin.vm.feature.Set+f1", "tpl", "a")
    d.call("admin.vm.feature.Set+f1", "tpl", "b")
    buf = drain(ev, b"value\0b\0oldvalue\0a\0\0")
    assert (b"1\0tpl\0domain-feature-pre-set:f1\0feature\0f1\0value\0a\0\0"
            b"1\0tpl\0domain-feature-set:f1\0feature\0f1\0value\0a\0\0") in buf
    assert b"1\0tpl\0domain-feature-pre-set:f1\0feature\0f1\0value\0b\0oldvalue\0a\0\0" in buf
    d.call("admin.vm.feature.Remove+f1", "tpl")
    assert (b"1\0tpl\0domain-feature-pre-delete:f1\0feature\0f1\0\0"
            b"1\0tpl\0domain-feature-delete:f1\0feature\0f1\0\0") in drain(ev, b"domain-feature-delete:f1")

    d.call("admin.vm.Remove", "tpl")
    buf = drain(ev, b"domain-delete")
    assert b"1\0\0domain-pre-delete\0vm\0tpl\0\0" in buf
    assert buf.index(b"domain-pre-delete") < buf.index(b"\0domain-delete\0")
    ev.close()
