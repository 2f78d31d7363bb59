"""qvm-create, qvm-clone and qvm-remove against a real bulkheadd."""
from tools_fixtures import qd, qube_file, require_qubes_start, usage_error  # noqa: F401


def names(qd):
    return [l.split(" ")[0] for l in qd.call("admin.vm.List").splitlines()]


def prop(qd, vm, name):
    return qd.call("admin.vm.property.Get", vm, arg=name)


def test_create_appvm(qd):
    r = qd.run("qvm-create", "-t", "host", "-l", "green", "c-app")
    assert r.rc == 0 and r.out == "" and r.err == ""
    assert "c-app" in names(qd)
    assert prop(qd, "c-app", "label") == "default=False type=label green"
    assert prop(qd, "c-app", "template").endswith("type=vm host")
    line = qd.call("admin.vm.List", "c-app")
    assert "class=AppVM" in line


def test_create_defaults_and_props(qd):
    # Label by index (yellow is 3), template from default_template, extra properties.
    r = qd.run("qvm-create", "--label", "3", "--prop", "memory=600", "--property=vcpus=1",
               "c-props")
    assert r.rc == 0, r
    assert prop(qd, "c-props", "label").endswith("yellow")
    assert prop(qd, "c-props", "memory") == "default=False type=int 600"
    assert prop(qd, "c-props", "vcpus") == "default=False type=int 1"
    # A bad property value still creates the qube; exit 2 as Qubes does.
    r = qd.run("qvm-create", "-l", "red", "--prop", "memory=lots", "c-badprop")
    assert r.rc == 2 and r.err.startswith("app: Error setting property memory (but VM created): ")
    assert "c-badprop" in names(qd)


def test_create_classes(qd):
    assert qd.run("qvm-create", "-C", "TemplateVM", "-l", "black", "c-tpl").rc == 0
    assert "class=TemplateVM" in qd.call("admin.vm.List", "c-tpl")
    assert qd.run("qvm-create", "--standalone", "-l", "purple", "c-sa").rc == 0
    assert "class=StandaloneVM" in qd.call("admin.vm.List", "c-sa")
    assert qd.run("qvm-create", "--disp", "-t", "default-dvm", "c-disp").rc == 0
    assert "class=DispVM" in qd.call("admin.vm.List", "c-disp")
    assert prop(qd, "c-disp", "label").endswith("red")
    r = qd.run("qvm-create", "--help-classes")
    assert r.rc == 0 and r.out.splitlines() == sorted(qd.call("admin.vmclass.List").splitlines())


def test_create_errors(qd):
    usage_error(qd.run("qvm-create", "c-nolabel"), "qvm-create", "--label option is mandatory")
    usage_error(qd.run("qvm-create", "-l", "red"), "qvm-create", "VMNAME is mandatory")
    r = qd.run("qvm-create", "-l", "mauve", "c-x")
    usage_error(r, "qvm-create", "no such label: 'mauve'; available: red, orange, yellow, "
                "green, gray, blue, purple, black")
    usage_error(qd.run("qvm-create", "-l", "red", "--prop", "memory", "c-x"), "qvm-create",
                "invalid property token: 'memory'")
    r = qd.run("qvm-create", "-l", "red", "work")
    assert r.rc == 1 and r.err.startswith("app: Error creating VM: ")
    r = qd.run("qvm-create", "-l", "red", "0bad-name")
    assert r.rc == 1 and r.err.startswith("app: Error creating VM: ")
    r = qd.run("qvm-create", "-l", "red", "-t", "nosuchtemplate", "c-y")
    assert r.rc == 1 and "c-y" not in names(qd)
    assert "c-x" not in names(qd)


def test_clone(qd):
    assert qd.run("qvm-create", "-l", "orange", "c-src").rc == 0
    # data in the source's private volume, to be found in the clone's
    require_qubes_start()
    assert qd.run("qvm-start", "c-src").rc == 0
    qube_file(qd, "c-src", "/home/user/marker", write="from c-src")
    assert qd.run("qvm-shutdown", "--wait", "--timeout", "30", "c-src").rc == 0
    assert qd.run("qvm-prefs", "c-src", "memory", "700").rc == 0
    assert qd.run("qvm-tags", "c-src", "add", "t1", "created-by-test").rc == 0
    assert qd.run("qvm-features", "c-src", "f1", "v1").rc == 0
    assert qd.run("qvm-firewall", "c-src", "add", "drop", "10.0.0.0/8").rc == 0
    r = qd.run("qvm-clone", "c-src", "c-dst")
    assert r.rc == 0, r
    assert prop(qd, "c-dst", "memory") == "default=False type=int 700"
    assert prop(qd, "c-dst", "label").endswith("orange")
    tags = qd.call("admin.vm.tag.List", "c-dst").splitlines()
    assert "t1" in tags and "created-by-test" not in tags
    assert qd.call("admin.vm.feature.Get", "c-dst", arg="f1") == "v1"
    assert qd.call("admin.vm.firewall.Get", "c-dst") == qd.call("admin.vm.firewall.Get", "c-src")
    assert "c-dst: Cloning private volume" in r.err
    assert "private" in qd.call("admin.vm.volume.List", "c-dst").splitlines()
    assert qd.run("qvm-start", "c-dst").rc == 0
    assert qube_file(qd, "c-dst", "/home/user/marker") == "from c-src"
    qube_file(qd, "c-dst", "/home/user/marker", write="changed in c-dst")
    assert qd.run("qvm-shutdown", "--wait", "--timeout", "30", "c-dst").rc == 0
    # a copy, not a share: the source still has its own data
    assert qd.run("qvm-start", "c-src").rc == 0
    assert qube_file(qd, "c-src", "/home/user/marker") == "from c-src"
    assert qd.run("qvm-shutdown", "--wait", "--timeout", "30", "c-src").rc == 0
    # As in Qubes, the clone keeps the source's template, which a standalone cannot have.
    r = qd.run("qvm-clone", "-C", "StandaloneVM", "c-src", "c-dst2")
    assert r.rc == 1 and r.err.startswith("qvm-clone: error: ") and "c-dst2" not in names(qd)
    # A template-based standalone is a clone of the template (Qubes' qvm-create).
    r = qd.run("qvm-create", "--standalone", "-t", "host", "-l", "green", "c-sa2")
    assert r.rc == 0, r
    assert "class=StandaloneVM" in qd.call("admin.vm.List", "c-sa2")
    assert prop(qd, "c-sa2", "label").endswith("green")
    r = qd.run("qvm-clone", "c-src", "c-dst")
    assert r.rc == 1 and r.err.startswith("qvm-clone: error: ")
    usage_error(qd.run("qvm-clone", "nosuch", "c-z"), "qvm-clone", "no such domain: 'nosuch'")
    usage_error(qd.run("qvm-clone", "c-src"), "qvm-clone",
                "the following arguments are required: NEWVM")


def test_remove(qd):
    assert qd.run("qvm-create", "-l", "red", "c-rm1").rc == 0
    assert qd.run("qvm-create", "-l", "red", "c-rm2").rc == 0
    r = qd.run("qvm-remove", "c-rm1", input="n\n")
    assert r.rc == 1
    assert r.out == ("This will completely remove the selected VM(s)...\n  c-rm1\n"
                     "Are you sure? [y/N] Remove cancelled.\n")
    assert "c-rm1" in names(qd)
    r = qd.run("qvm-remove", "c-rm1", input="y\n")
    assert r.rc == 0 and "c-rm1" not in names(qd)
    r = qd.run("qvm-remove", "-f", "c-rm2")
    assert r.rc == 0 and r.out == "" and "c-rm2" not in names(qd)
    # Refusals come from the daemon: a template still in use.
    r = qd.run("qvm-remove", "-f", "host")
    assert r.rc == 1 and r.err.startswith("qvm-remove: error: ") and "host" in names(qd)
    usage_error(qd.run("qvm-remove", "-f", "nosuch"), "qvm-remove", "no such domain: 'nosuch'")
    usage_error(qd.run("qvm-remove", "-f"), "qvm-remove",
                "one of the arguments --all VMNAME is required")
