#!/usr/bin/python3
"""Before/after cost of one operation on two builds, in the same run, rounds alternated.

    bench/cost.py OP BUILD_A [BUILD_B]      env: BENCH_ROUNDS=20 BENCH_STRACE=1

OP: `start`  (a halted app qube to `qvm-run -p a true`, then admin.vm.Kill),
    `dispvm` (`qvm-run --dispvm=dvmt -- true`, cold, until the disposable is removed),
    `preload` (the same served by a preloaded disposable, preload-dispvm-max=1: the
              round waits for the next one to be Running and the daemon idle first, and
              the CPU window ends once the used one is removed, before the refill),
    `kill`   (admin.vm.Kill of running app qube a, after one call into it; started again
              outside the window),
    `call`   (`qrexec-client -d a user:true` into a running qube),
    `copy`   (`qvm-copy-to-vm b ~/big` of BENCH_COPY_MIB MiB (256) from qube a, between
              two running qubes; the received file is removed and `sync` run after each).

On a shared machine wall-clock times move with the neighbours' load, so beside the
median wall time of each round this prints the CPU time it cost, which load does not
change much: the daemon's own and its helpers' (bulkheadd runs in a cpuacct cgroup of
this script's, so everything it forks that stays outside a qube counts), the qubes'
(the engine's per-daemon cpuacct parent: hierarchical, and it keeps what removed qubes
used) and the client's (rusage of the commands this script ran). With BENCH_STRACE=1,
one more round per build runs under `strace -c -f` of the daemon (syscall counts are
exact and independent of load). Figures only: nothing passes or fails.
Needs root (ns engine, cgroup v1 cpuacct). Each build gets a private daemon, stopped at
the end."""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(op):
    sys.path.insert(0, HERE)
    from bhbench import Bench, QVM_RUN, BUILD, wait_preloaded  # noqa: E402 (BULKHEAD_BUILD is set by the parent)

    cg = f"/sys/fs/cgroup/cpuacct/bh-cost-{os.getpid()}"
    b = Bench()
    os.makedirs(cg, exist_ok=True)
    # the daemon (and whatever it forks from now on, outside the qubes' cgroups)
    open(f"{cg}/cgroup.procs", "w").write(str(b.d.proc.pid))

    def cpu_ns():
        own = int(open(f"{cg}/cpuacct.usage").read())
        try:
            qubes = int(open(f"/sys/fs/cgroup/cpuacct/{b.cgroup_tag()}/cpuacct.usage").read())
        except OSError:
            qubes = 0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = int((ru.ru_utime + ru.ru_stime) * 1e9)
        return own, qubes, client

    env = b.env
    client_bin = str(BUILD / "src/qrexec/qrexec-client")

    def run(cmd):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True)
        return time.perf_counter() - t0

    def wait_gone(name, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            names = [l.split(" ", 1)[0] for l in b.call("admin.vm.List").splitlines()]
            if name not in names:
                return
            time.sleep(0.005)
        raise RuntimeError(f"{name} not removed")

    def disp_names():
        return {l.split(" ", 1)[0] for l in b.call("admin.vm.List").splitlines() if "class=DispVM" in l}

    # A qube that stays up keeps the engine's per-daemon cgroup parent (and with it what
    # removed qubes used) until the end.
    b.create_app("keep")
    b.qvm_run("keep", "true")
    if op == "copy":
        mib = int(os.environ.get("BENCH_COPY_MIB", "256"))
        (b.d.root / "policy.d").mkdir(exist_ok=True)
        (b.d.root / "policy.d/10-bench.policy").write_text("qubes.Filecopy  *  a  b  allow\n")
        b.create_app("b", "blue")
        b.qvm_run("b", "true")
    if op in ("start", "call", "copy", "kill"):
        b.create_app("a")
        b.qvm_run("-p", "a", "true")  # warm-up
    if op == "start":
        b.call("admin.vm.Kill", "a"); b.wait_state("a", "Halted")
    if op == "copy":
        b.qvm_run("-p", "a", f"head -c {mib}M /dev/urandom > ~/big")
        os.sync()
    if op in ("dispvm", "preload"):
        b.create_app("dvmt")
        b.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
        b.qvm_run("--dispvm=dvmt", "--", "true")  # warm-up
        b.wait_idle()
    if op == "preload":
        b.call("admin.vm.feature.Set+preload-dispvm-max", "dvmt", "1")

    def prepare():
        """what must be ready before a round (outside its CPU window)"""
        if op == "preload":
            wait_preloaded(b)
            b.wait_idle(quiet_ms=20)
        if op == "kill":
            if "state=Running" not in b.call("admin.vm.CurrentState", "a").replace("power_state", "state"):
                b.qvm_run("a", "true")
            b.wait_idle(quiet_ms=20)

    def one_round():
        """wall seconds of the operation; the CPU window covers its whole cost"""
        if op == "start":
            wall = b.qvm_run("-p", "a", "true")
            b.call("admin.vm.Kill", "a"); b.wait_state("a", "Halted")
        elif op == "dispvm":
            before = disp_names()
            wall = b.qvm_run("--dispvm=dvmt", "--", "true")
            for n in disp_names() - before:
                wait_gone(n)
            b.wait_idle(quiet_ms=20)
        elif op == "preload":
            before = disp_names()
            wall = b.qvm_run("--dispvm=dvmt", "--", "true")
            for n in before:
                wait_gone(n)
            if disp_names():
                return None  # the refill began inside the window: measure again
        elif op == "kill":
            t0 = time.perf_counter()
            b.call("admin.vm.Kill", "a")
            wall = time.perf_counter() - t0
            b.wait_state("a", "Halted")
        elif op == "copy":
            wall = b.qvm_run("-p", "a", "/usr/lib/bulkhead/qvm-copy-to-vm b ~/big")
            b.qvm_run("b", "rm ~/QubesIncoming/a/big")
            os.sync()
        else:
            wall = run([client_bin, "-d", "a", "user:true"])
        return wall

    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "round":
            wall = None
            while wall is None:
                prepare()
                c0 = cpu_ns()
                wall = one_round()
                c1 = cpu_ns()
            print(json.dumps({"wall": wall, "cpu": [c1[i] - c0[i] for i in range(3)]}), flush=True)
        elif cmd == "strace":
            out = f"/tmp/bh-cost-strace-{os.getpid()}.txt"
            prepare()
            st = subprocess.Popen(["strace", "-c", "-f", "-qq", "-o", out, "-p", str(b.d.proc.pid)],
                                  stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # attached
            one_round()
            time.sleep(0.2 if op != "preload" else 0)  # preload: before the refill's tick
            st.send_signal(2); st.wait()
            counts = {}
            for l in open(out).read().splitlines():
                f = l.split()  # % time, seconds, usecs/call, calls, [errors], syscall
                if len(f) >= 5 and f[3].isdigit() and f[-1] != "total":
                    counts[f[-1]] = int(f[3])
            os.unlink(out)
            print(json.dumps({"syscalls": counts}), flush=True)
        elif cmd == "quit":
            break
    b.close()
    try:
        os.rmdir(cg)
    except OSError:
        pass


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    op, builds = sys.argv[1], [os.path.realpath(p) for p in sys.argv[2:4]]
    rounds = int(os.environ.get("BENCH_ROUNDS", "20"))
    workers = []
    for bd in builds:
        env = dict(os.environ, BULKHEAD_BUILD=bd)
        p = subprocess.Popen(["/usr/bin/python3", os.path.abspath(__file__), "--worker", op], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"worker for {bd} failed")
        workers.append(p)
    res = [{"wall": [], "cpu": []} for _ in builds]
    try:
        for _ in range(rounds):
            for i, p in enumerate(workers):  # alternate: A, B, A, B, ...
                p.stdin.write("round\n"); p.stdin.flush()
                r = json.loads(p.stdout.readline())
                res[i]["wall"].append(r["wall"]); res[i]["cpu"].append(r["cpu"])
        sysc = []
        if os.environ.get("BENCH_STRACE", "1") == "1":
            for p in workers:
                p.stdin.write("strace\n"); p.stdin.flush()
                sysc.append(json.loads(p.stdout.readline())["syscalls"])
    finally:
        for p in workers:
            try:
                p.stdin.write("quit\n"); p.stdin.flush()
            except BrokenPipeError:
                pass
        for p in workers:
            p.wait()
    la = open("/proc/loadavg").read().split()[:3]
    print(f"== {op}: {rounds} rounds per build, alternated; load average {' '.join(la)}")
    for bd, r in zip(builds, res):
        cpu = [sum(c[k] for c in r["cpu"]) / len(r["cpu"]) / 1e6 for k in range(3)]
        print(f"{bd}\n  wall median {statistics.median(r['wall'])*1000:7.1f} ms (min {min(r['wall'])*1000:.1f})"
              f"  CPU per round {sum(cpu):6.1f} ms = daemon+helpers {cpu[0]:.1f} + qubes {cpu[1]:.1f}"
              f" + client {cpu[2]:.1f}")
    if sysc:
        keys = sorted(set().union(*sysc), key=lambda k: -max(s.get(k, 0) for s in sysc))
        print("  syscalls of the daemon tree in one round (strace -c -f):")
        print("  " + "".join(f"{'total':>10}"), *[f"{sum(s.values()):>8}" for s in sysc])
        for k in keys[:40]:
            print(f"  {k:>18}", *[f"{s.get(k, 0):>8}" for s in sysc])
    return 0


if __name__ == "__main__":
    sys.exit(main())
