"""Everything the API reports survives a restart: a seeded random walk of changes
(properties, globals, tags, features, notes, firewall, labels, creates and removes,
refused calls included), then the whole visible state is compared before and after."""
import random

from admin_fixtures import AdminError, Daemon

LABELS = ["red", "orange", "yellow", "green", "gray", "blue", "purple", "black"]
PROPS = {
    "memory": ["300", "400", "1000", "0", "x"],
    "maxmem": ["0", "4000", "8000"],
    "vcpus": ["1", "2", "4", "999"],
    "label": LABELS + ["nosuch"],
    "netvm": ["", "sys-net", "sys-firewall", "work", "vault"],
    "provides_network": ["True", "False"],
    "template_for_dispvms": ["True", "False"],
    "default_dispvm": ["", "default-dvm", "work"],
    "kernelopts": ["", "quiet", "a\\b"],
    "default_user": ["user", "root", "-bad"],
    "keyboard_layout": ["us++", "de+nodeadkeys+", "bad"],
    "include_in_backups": ["True", "False"],
    "qrexec_timeout": ["1", "60", "3601"],
}
GLOBALS = {
    "default_netvm": ["", "sys-firewall", "sys-net", "work"],
    "default_dispvm": ["", "default-dvm"],
    "default_qrexec_timeout": ["30", "60"],
    "clockvm": ["", "sys-net"],
    "default_kernel": ["", "6.1"],
}


def snapshot(d):
    state = {"globals": d.call("admin.property.GetAll"), "labels": {}}
    for label in d.call("admin.label.List").splitlines():
        state["labels"][label] = (d.call("admin.label.Get+" + label), d.call("admin.label.Index+" + label))
    state["list"] = d.call("admin.vm.List")
    for line in state["list"].splitlines():
        q = line.split(" ")[0]
        state[q] = {
            "props": d.call("admin.vm.property.GetAll", q),
            "tags": d.call("admin.vm.tag.List", q),
            "features": {f: d.call("admin.vm.feature.Get+" + f, q)
                         for f in d.call("admin.vm.feature.List", q).splitlines()},
            "notes": d.call("admin.vm.notes.Get", q),
            "firewall": d.call("admin.vm.firewall.Get", q),
        }
    return state


def step(d, rng, n):
    qubes = [line.split(" ")[0] for line in d.call("admin.vm.List").splitlines()]
    q = rng.choice(qubes)
    other = rng.choice(qubes + [""])
    op = rng.randrange(14)
    if op == 0:
        p = rng.choice(list(PROPS))
        d.call("admin.vm.property.Set+" + p, q, rng.choice(PROPS[p]))
    elif op == 1:
        d.call("admin.vm.property.Reset+" + rng.choice(list(PROPS)), q)
    elif op == 2:
        g = rng.choice(list(GLOBALS))
        if rng.random() < 0.7:
            d.call("admin.property.Set+" + g, payload=rng.choice(GLOBALS[g]))
        else:
            d.call("admin.property.Reset+" + g)
    elif op == 3:
        d.call(rng.choice(["admin.vm.tag.Set+", "admin.vm.tag.Remove+"]) + rng.choice(["t1", "t2", "t-3"]), q)
    elif op == 4:
        if rng.random() < 0.7:
            d.call("admin.vm.feature.Set+" + rng.choice(["f1", "f.2", "gui"]), q, rng.choice(["", "1", "v a l"]))
        else:
            d.call("admin.vm.feature.Remove+" + rng.choice(["f1", "f.2", "gui"]), q)
    elif op == 5:
        d.call("admin.vm.notes.Set", q, rng.choice(["", "note", "two\nlines\twith tab %s"]))
    elif op == 6:
        d.call("admin.vm.firewall.Set", q, rng.choice([
            "action=accept\n", "action=drop dst4=10.0.0.0/8\naction=accept\n",
            "action=accept proto=tcp dstports=443 comment=web %d\naction=drop\n", ""]))
    elif op == 7:
        cls, arg = rng.choice([("AppVM", "host"), ("AppVM", ""), ("StandaloneVM", ""), ("TemplateVM", ""),
                               ("DispVM", "default-dvm")])
        d.call(f"admin.vm.Create.{cls}+{arg}", payload=f"name=q{n} label={rng.choice(LABELS)}")
    elif op == 8:
        d.call("admin.vm.Remove", q)
    elif op == 9:
        if rng.random() < 0.5:
            d.call("admin.label.Create+" + rng.choice(["pink", "teal"]), payload=rng.choice(["0xFF00ff", "0x008080"]))
        else:
            d.call("admin.label.Remove+" + rng.choice(["pink", "teal", "red"]))
    elif op == 10:
        d.call("admin.vm.CreateDisposable", "default-dvm")
    elif op == 11:  # references to any qube, valid or not
        p = rng.choice(["template", "netvm", "default_dispvm", "management_dispvm", "guivm", "audiovm"])
        d.call("admin.vm.property.Set+" + p, q, other)
    elif op == 12:
        g = rng.choice(["default_template", "management_dispvm", "default_dispvm", "default_netvm", "updatevm"])
        d.call("admin.property.Set+" + g, payload=other)
    else:
        p = rng.choice(["provides_network", "template_for_dispvms", "netvm", "template", "label", "default_dispvm"])
        d.call("admin.vm.property.Reset+" + p, q)


def test_state_survives_restart(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        rng = random.Random(20261125)
        ok = 0
        for n in range(400):
            try:
                step(d, rng, n)
                ok += 1
            except AdminError:
                pass
        assert ok > 100  # the walk did change things
        before = snapshot(d)
        d.stop()
        d.start()
        after = snapshot(d)
        for key in before:
            assert after.get(key) == before[key], key
        assert set(after) == set(before)
    finally:
        d.stop()


def _value(d, method, q):
    return d.call(method, q).split(" ", 2)[2]


def broken_invariants(d):
    """What no sequence of API calls may produce: a netvm chain through a qube that
    does not provide network, a netvm loop, a disposable whose template is not a
    disposable template, a qube without an existing label, an app
    qube (or default_template) whose template is not a TemplateVM. (A default_dispvm
    may stop being a disposable template, as in Qubes: using it then fails.)"""
    bad = []
    labels = d.call("admin.label.List").splitlines()
    for line in d.call("admin.vm.List").splitlines():
        q, klass = line.split(" ")[0], line.split(" ")[1]
        if q == "dom0":
            continue
        seen, cur = {q}, _value(d, "admin.vm.property.Get+netvm", q)
        while cur:
            if cur in seen:
                bad.append(("netvm loop", q))
                break
            seen.add(cur)
            if _value(d, "admin.vm.property.Get+provides_network", cur) != "True":
                bad.append(("netvm without network", q, cur))
            cur = _value(d, "admin.vm.property.Get+netvm", cur)
        if klass == "class=DispVM":
            tpl = _value(d, "admin.vm.property.Get+template", q)
            if _value(d, "admin.vm.property.Get+template_for_dispvms", tpl) != "True":
                bad.append(("disposable template", q, tpl))
        if _value(d, "admin.vm.property.Get+label", q) not in labels:
            bad.append(("label", q))
        if klass == "class=AppVM":
            tpl = _value(d, "admin.vm.property.Get+template", q)
            if not tpl or d.call("admin.vm.List", tpl).split(" ")[1] != "class=TemplateVM":
                bad.append(("app qube template", q, tpl))
    g = _value(d, "admin.property.Get+default_netvm", "dom0")
    if g and _value(d, "admin.vm.property.Get+provides_network", g) != "True":
        bad.append(("global default_netvm without network", g))
    t = _value(d, "admin.property.Get+default_template", "dom0")
    if t and d.call("admin.vm.List", t).split(" ")[1] != "class=TemplateVM":
        bad.append(("default_template", t))
    return bad


def test_random_walk_keeps_the_model_valid(tmp_path):
    for seed in range(4):
        d = Daemon(tmp_path / str(seed)).start()
        try:
            rng = random.Random(seed)
            for n in range(300):
                try:
                    step(d, rng, n)
                except AdminError:
                    pass
                if n % 50 == 49:
                    assert broken_invariants(d) == [], (seed, n)
        finally:
            d.stop()
