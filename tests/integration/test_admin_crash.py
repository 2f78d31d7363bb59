"""SIGKILL during writes: no acknowledged change is lost, nothing is left half-made, and
the pool holds volumes of exactly the qubes the store knows."""
import random
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from admin_fixtures import BUILD, AdminError, Daemon


@pytest.fixture
def new_daemon(tmp_path):
    """Starts a daemon on tmp_path and stops it at the end, also when the test fails
    half-way (a failed assertion used to leave it running)."""
    made = []

    def start():
        d = Daemon(tmp_path, extra_args=["--no-autostart"]).start()
        made.append(d)
        return d
    yield start
    for d in made:
        d.stop()


def pool_qubes(d):
    """Qube directories of the default pool, less built templates still unclaimed (they
    wait there for the create that adopts them)."""
    names = set()
    for p in (d.root / "pools/default/qubes").iterdir():
        if p.name.startswith("."):
            continue  # a temporary: swept at pool open, never a volume
        if (p / "origin").exists() and not (p / "claimed").exists():
            continue
        names.add(p.name)
    return names


def store_qubes(d):
    listing = d.call("admin.vm.List")
    return {line.split(" ")[0] for line in listing.splitlines() if "class=AdminVM" not in line}


def assert_pool_matches_store(d):
    pool, store = pool_qubes(d), store_qubes(d)
    assert pool == store, f"volumes without a qube: {sorted(pool - store)}; qubes without volumes: {sorted(store - pool)}"


def writer(d, tag, acked, stop):
    i = 0
    while not stop.is_set():
        i += 1
        name = f"{tag}-{i}"
        try:
            d.call("admin.vm.Create.AppVM+host", payload=f"name={name} label=red")
            acked.append(("create", name))
            d.call("admin.vm.property.Set+memory", name, str(300 + i))
            acked.append(("memory", name, str(300 + i)))
            d.call("admin.vm.feature.Set+f", name, str(i))
            acked.append(("feature", name, str(i)))
        except (AdminError, OSError, RuntimeError):
            if stop.is_set():
                return
            time.sleep(0.01)


def test_sigkill_during_writes(new_daemon, tmp_path):
    d = new_daemon()
    rng = random.Random(1234)
    for rnd in range(4):
        acked, stop = [], threading.Event()
        threads = [threading.Thread(target=writer, args=(d, f"r{rnd}t{t}", acked, stop)) for t in range(4)]
        for t in threads:
            t.start()
        # kill while writes are under way: after the first acknowledgement (a loaded host
        # may take longer than the random delay for it), at a random point after that
        deadline = time.monotonic() + 30
        while not acked and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3 + rng.random() * 0.7)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        d.proc = None
        # The store itself is intact.
        db = sqlite3.connect(str(d.root / "qubes.db"))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        d.start()
        listing = d.call("admin.vm.List")
        present = {line.split(" ")[0] for line in listing.splitlines()}
        assert acked, "no write was acknowledged before the kill"
        for a in acked:
            assert a[1] in present, a
            if a[0] == "memory":
                assert d.call("admin.vm.property.Get+memory", a[1]).split()[-1] in (a[2],)
            if a[0] == "feature":
                assert d.call("admin.vm.feature.Get+f", a[1]) == a[2]
        # The pool and the store agree: a kill between making volumes and the store
        # commit leaves no volumes that a later create of the same name trips over.
        assert_pool_matches_store(d)
        # Nothing half-made: every qube has its label and template.
        for name in present:
            if name.startswith(f"r{rnd}"):
                assert d.call("admin.vm.property.Get+label", name) == "default=False type=label red"
                assert d.call("admin.vm.property.Get+template", name) == "default=False type=vm host"
    d.stop()


def test_orphaned_volumes_are_collected_at_start(new_daemon, tmp_path):
    """The state a SIGKILL between volumes_create and the store commit leaves behind, made
    exactly: volumes in the pool for qubes the store does not know. The next start
    collects them, so creating those names works again."""
    d = new_daemon()
    d.call("admin.vm.Create.AppVM+host", payload="name=kept label=red")
    d.call("admin.vm.Create.TemplateVM", payload="name=tplkept label=black")
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.proc = None
    storage = [str(BUILD / "src/storage/bulkhead-storage"), "--root", str(d.root)]
    for args in (["--template", "host", "create", "orphan-app"],
                 ["--class", "TemplateVM", "create", "orphan-tpl"]):
        r = subprocess.run(storage + args, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    qubes = d.root / "pools/default/qubes"
    (qubes / "orphan-app/private-mnt/marker").write_text("x")  # ordinary data: it goes
    assert {"orphan-app", "orphan-tpl", "kept", "tplkept"} <= {p.name for p in qubes.iterdir()}
    d.start()
    assert not (qubes / "orphan-app").exists() and not (qubes / "orphan-tpl").exists()
    assert_pool_matches_store(d)
    # the qubes the store knows kept their volumes
    assert (qubes / "kept/private.img").exists() and (qubes / "tplkept/root").is_dir()
    d.call("admin.vm.Create.AppVM+host", payload="name=orphan-app label=red")
    d.call("admin.vm.Create.TemplateVM", payload="name=orphan-tpl label=black")
    assert_pool_matches_store(d)
    d.stop()


def test_claimed_built_template_is_unclaimed_not_deleted(new_daemon, tmp_path):
    """A crash between adopting a template qvm-template built and the store commit: the
    built root stays (it is expensive to make) and the next create adopts it again."""
    d = new_daemon()
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.proc = None
    qubes = d.root / "pools/default/qubes"
    storage = [str(BUILD / "src/storage/bulkhead-storage"), "--root", str(d.root)]
    r = subprocess.run(storage + ["--class", "TemplateVM", "create", "built"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # what qvm-template leaves, then what the adopting create wrote before the crash
    (qubes / "built/origin").write_text("host")
    (qubes / "built/root/made-by-build").write_text("1")
    (qubes / "built/claimed").write_text("1\n")
    d.start()
    assert (qubes / "built/root/made-by-build").exists()
    assert not (qubes / "built/claimed").exists()
    d.call("admin.vm.Create.TemplateVM", payload="name=built label=black")
    assert (qubes / "built/root/made-by-build").exists() and (qubes / "built/claimed").exists()
    assert_pool_matches_store(d)
    d.stop()
