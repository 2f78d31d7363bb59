#!/usr/bin/python3
"""Where the time goes: one operation on a private bulkheadd under `strace -f -tt -T`
(the daemon and everything it forks, and the client), for reading the timeline.
Not a bench (strace slows every syscall several times); the figures are in bench/*.sh.
  bench/profile_trace.py start|dispvm|preload|call [OUTDIR]
(preload: `qvm-run --dispvm` served by a preloaded disposable, preload-dispvm-max=1)   (root; default OUTDIR /tmp)
writes OUTDIR/MODE.daemon.st and OUTDIR/MODE.client.st."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bhbench import BUILD, QVM_RUN, Bench, wait_preloaded  # noqa: E402

mode = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
b = Bench()
try:
    b.create_app("a")
    b.create_app("dvmt")
    b.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    b.qvm_run("-p", "a", "true")  # warm caches
    b.call("admin.vm.Kill", "a")
    b.wait_state("a", "Halted")
    b.qvm_run("--dispvm=dvmt", "--", "true")
    if mode == "start":
        cmd = [QVM_RUN, "-p", "a", "true"]
    elif mode == "dispvm":
        cmd = [QVM_RUN, "--dispvm=dvmt", "--", "true"]
    elif mode == "preload":
        b.call("admin.vm.feature.Set+preload-dispvm-max", "dvmt", "1")
        wait_preloaded(b)
        time.sleep(0.5)  # the refill tick and the qube's own start settled
        cmd = [QVM_RUN, "--dispvm=dvmt", "--", "true"]
    elif mode == "call":
        b.qvm_run("a", "true")
        cmd = [str(BUILD / "src/qrexec/qrexec-client"), "-d", "a", "user:true"]
    else:
        sys.exit("mode: start, dispvm, preload or call")
    st = subprocess.Popen(["strace", "-f", "-tt", "-T", *os.environ.get("TRACE_ARGS", "").split(), "-o", f"{out}/{mode}.daemon.st", "-p", str(b.d.proc.pid)])
    time.sleep(1)
    t0 = time.perf_counter()
    subprocess.run(["strace", "-f", "-tt", "-T", "-o", f"{out}/{mode}.client.st", *cmd], env=b.env, check=True)
    print(f"{mode}: {(time.perf_counter() - t0) * 1000:.1f} ms under strace; traces in {out}/{mode}.*.st")
    time.sleep(0.5)
    st.send_signal(signal.SIGINT)
    st.wait()
finally:
    b.close()
