"""SIGKILL during writes: no acknowledged change is lost, nothing is left half-made."""
import random
import signal
import sqlite3
import threading
import time

from admin_fixtures import AdminError, Daemon


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


def test_sigkill_during_writes(tmp_path):
    d = Daemon(tmp_path, extra_args=["--no-autostart"]).start()
    rng = random.Random(1234)
    for rnd in range(4):
        acked, stop = [], threading.Event()
        threads = [threading.Thread(target=writer, args=(d, f"r{rnd}t{t}", acked, stop)) for t in range(4)]
        for t in threads:
            t.start()
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
        # Nothing half-made: every qube has its label and template.
        for name in present:
            if name.startswith(f"r{rnd}"):
                assert d.call("admin.vm.property.Get+label", name) == "default=False type=label red"
                assert d.call("admin.vm.property.Get+template", name) == "default=False type=vm host"
    d.stop()
