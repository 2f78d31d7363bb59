#!/usr/bin/env bash
# The GUI path against drawing directly on the host display, in one run:
#  - full-window updates per second of a 1920x1080 window that repaints itself as fast as
#    it can (bench/gui_paint): in a qube (qube Xvfb -> gui-agent -> sealed memfd ->
#    bulkhead-guid -> host X) beside the same program on the host display; counted on the
#    host display with DAMAGE (bench/gui_watch), so only updates that reached it count;
#  - input-to-pixel latency: an XTEST key press on the host display until the first
#    damage of an xterm's window, xterm in the qube beside xterm on the host display;
#  - memory of an idle GUI qube: Pss of every process in the qube before and after its
#    GUI (Xvfb + gui-agent) started, and the host daemon's.
# The host display is a private Xvfb. Usage: bench/gui.sh [BUILD_DIR] [SECONDS] [PRESSES]
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-build}")
exec /usr/bin/python3 - "${2:-3}" "${3:-20}" <<'PY'
import os, subprocess, sys, tempfile, time
sys.path.insert(0, "tests/integration")
from admin_fixtures import Daemon, kill_all
from gui_fixtures import BUILD, GuiSession, HostDisplay, NEEDED
import shutil
secs, presses = float(sys.argv[1]), int(sys.argv[2])
missing = [p for p in NEEDED if not shutil.which(p)]
if missing or not (BUILD / "bench/gui_paint").exists():
    print(f"gui: skipped (missing {missing or 'bench/gui_paint'})")
    sys.exit(0)
paint, watch = str(BUILD / "bench/gui_paint"), str(BUILD / "bench/gui_watch")
host = HostDisplay(2000, 1200)
tmp = tempfile.mkdtemp(prefix="bh-bench-gui-")
d = Daemon(tmp, defaults=False).start()
s = GuiSession(d, host)
procs = []
PSS = "cat /proc/[0-9]*/smaps_rollup 2>/dev/null | awk '/^Pss:/ {s += $2} END {print s}'"


def pss(q):
    return int(s.qvm_run("-p", "--user", "root", q, PSS).stdout.strip() or 0)


def content_of(frame):
    out = host.run("xwininfo", "-children", "-id", str(frame)).stdout
    return int([ln for ln in out.splitlines() if ln.strip().startswith("0x")][0].split()[0], 16)


def count(win):
    return float(host.run(watch, "count", str(win), str(secs)).stdout.split()[1])


def latency(focus, win):
    time.sleep(1)  # mapped and drawn
    host.run("xdotool", "windowfocus", str(focus))
    time.sleep(0.3)
    return host.run(watch, "latency", str(win), str(presses)).stdout.strip()


try:
    d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
    d.call("admin.property.Set+default_template", payload="host")
    d.call("admin.vm.Create.AppVM+host", payload="name=a label=red")
    assert s.qvm_run("a", "true").returncode == 0
    time.sleep(1)
    base = pss("a")
    s.start()
    s.wait_gui("a")
    time.sleep(2)
    idle = pss("a")
    guid = [l for l in host.run("pgrep", "-f", "bulkhead-guid --qube a", check=False).stdout.split()]
    guid_pss = 0
    for p in guid:
        with open(f"/proc/{p}/smaps_rollup") as f:
            guid_pss += sum(int(l.split()[1]) for l in f if l.startswith("Pss:"))
    with open(paint, "rb") as f:
        assert s.qvm_run("-p", "a", "cat > /tmp/gui_paint && chmod +x /tmp/gui_paint", input=f.read()).returncode == 0

    # full-window updates: direct on the host display
    p = subprocess.Popen([paint, "1920", "1080", str(secs + 3), "direct"], env=host.env(), stdout=subprocess.PIPE)
    procs.append(p)
    w = host.find_window("direct")
    time.sleep(0.5)
    direct_ups = count(w)
    direct_fps = p.communicate()[0].decode().split()[1]
    # ... and from the qube
    s.spawn("a", f"/tmp/gui_paint 1920 1080 {secs + 4} viaqube")
    fr = host.find_window("[a] viaqube")
    time.sleep(1)
    qube_ups = count(content_of(fr))
    time.sleep(3)

    # input to pixel
    t = subprocess.Popen(["xterm", "-T", "direct-term", "-geometry", "40x5+0+0"], env=host.env())
    procs.append(t)
    w = host.find_window("direct-term")
    dlat = latency(w, w)
    s.spawn("a", "xterm -T qube-term -geometry 40x5+400+0")
    fr = host.find_window("[a] qube-term")
    qlat = latency(fr, content_of(fr))

    print(f"1920x1080 full-window updates/s   direct {direct_ups:8.1f}   via qube {qube_ups:8.1f}   "
          f"ratio {qube_ups / direct_ups if direct_ups else 0:.2f}   (painter's own rate direct: {direct_fps}/s)")
    print(f"key press -> pixels (xterm)       direct: {dlat}")
    print(f"                                  via qube: {qlat}")
    print(f"idle GUI qube memory (Pss)        without GUI {base / 1024:.1f} MiB   with GUI {idle / 1024:.1f} MiB   "
          f"(+{(idle - base) / 1024:.1f} MiB: Xvfb + gui-agent); host daemon {guid_pss / 1024:.1f} MiB")
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait()
    s.stop()
    kill_all(d)
    d.stop()
    d.cleanup()
    host.close()
    shutil.rmtree(tmp, ignore_errors=True)  # the daemon's store and logs
PY
