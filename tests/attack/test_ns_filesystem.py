"""Attacks on the filesystem boundary, each run inside a qube as its root."""
import hashlib
import os
import pathlib

import pathlib as _pl
import sys as _sys

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import ns_env, make_root, attack, cgroup_mounts, BUILD  # noqa: E402,F401


def test_host_secrets_unreadable(ns_env):
    shadow = pathlib.Path("/etc/shadow").read_bytes()
    marker = ns_env.base / "host-secret-marker"
    marker.write_text("TOPSECRET-HOST-1234\n")
    q = ns_env.qube("fs1")
    q.start()
    # control: the qube's own copy of the marker is found by the very same searches
    q.sh("mkdir -p /opt/c && echo TOPSECRET-HOST-QUBE-OWN > /opt/c/host-secret-marker", check=True)
    r = q.sh("cat /etc/shadow /proc/1/root/etc/shadow /root/.bashrc 2>/dev/null; ls -a /root; "
             "grep -rs TOPSECRET-HOST / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr 2>/dev/null | head -3; "
             "find / -xdev -path /usr -prune -o -name host-secret-marker -print 2>/dev/null; echo end")
    assert r.stdout.splitlines()[-1] == "end", r.stdout
    assert "/opt/c/host-secret-marker:TOPSECRET-HOST-QUBE-OWN\n" in r.stdout, r.stdout  # grep ran
    assert "\n/opt/c/host-secret-marker\n" in r.stdout, r.stdout  # find ran
    assert "TOPSECRET-HOST-1234" not in r.stdout
    assert r.stdout.count("host-secret-marker") == 2, r.stdout  # only the qube's own
    for line in shadow.splitlines()[:3]:
        assert line.decode(errors="replace") not in r.stdout
    # the host's /root is not the qube's /root
    host_root = set(os.listdir("/root")) - {".", ".."}
    inside = set(r.stdout.split())
    assert not (host_root - {".bashrc", ".profile"}) & inside or not host_root


def test_other_qube_private_unreachable(ns_env):
    a, b = ns_env.qube("fs-a"), ns_env.qube("fs-b")
    a.start()
    b.start()
    a.sh("echo A-PRIVATE-DATA > /home/user/secret; echo A-PRIVATE-DATA > /rw/secret", check=True)
    # control: b's own file with the same content is found by the same search
    b.sh("echo A-PRIVATE-DATA-OF-B > /home/user/own", check=True)
    r = b.sh("grep -rs A-PRIVATE-DATA / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr 2>/dev/null; "
             "ls /proc/*/root/home/user 2>/dev/null; mount | grep -c fs-a-private; echo end")
    assert r.stdout.splitlines()[-1] == "end", r.stdout
    found = [l for l in r.stdout.splitlines() if "A-PRIVATE-DATA" in l]
    assert found and all(l.endswith("A-PRIVATE-DATA-OF-B") for l in found), r.stdout
    # and not through the image file either (control: the find ran and lists an image
    # planted on the same filesystem)
    b.sh("touch /opt/planted.img", check=True)
    r = b.sh("ls / /run /run/qubes; find / -xdev -name '*.img' 2>/dev/null; echo end")
    assert r.stdout.splitlines()[-1] == "end" and "/opt/planted.img" in r.stdout, r.stdout
    assert "fs-a-private.img" not in r.stdout


def propagating(mountinfo):
    """mountinfo lines whose mount is in a propagation peer group (shared, or a slave of
    one): a mount event in a peer would show up there."""
    out = []
    for l in mountinfo.splitlines():
        optional = l.split(" - ")[0].split()[6:]
        if [o for o in optional if o.startswith(("shared:", "master:", "propagate_from:"))]:
            out.append(l)
    return out


def test_qubes_share_no_mounts(ns_env):
    # Two qubes of one template: every mount in b's namespace is a private copy of its
    # own, in no propagation peer group with a, the host or anything else, so nothing
    # mounted or unmounted anywhere else can appear in b (and b's own mounts reach no
    # one). Control for the check: the parser finds a mount in a peer group, as the
    # kernel writes it (and the host's own shared mounts, where the host has any: a
    # machine booted without systemd, as the cgroup-v2 test VM, has none).
    a, b = ns_env.qube("fs-ma"), ns_env.qube("fs-mb")
    a.start()
    b.start()
    sample = ("36 35 98:0 /mnt1 /mnt2 rw,noatime shared:7 - ext4 /dev/root rw\n"
              "37 35 98:0 /mnt3 /mnt4 rw,noatime master:1 - ext4 /dev/root rw\n"
              "38 35 98:0 /mnt5 /mnt6 rw,noatime - ext4 /dev/root rw\n")
    assert len(propagating(sample)) == 2, "control: the parser finds peer-group mounts"
    host = open("/proc/self/mountinfo").read()
    if " shared:" in host:
        assert propagating(host), "control: the host's shared mounts are found"
    for q, other in ((a, "fs-mb"), (b, "fs-ma")):
        r = q.sh("cat /proc/self/mountinfo")
        assert len(r.stdout.splitlines()) > 10, r.stdout  # control: its own mounts are listed
        assert propagating(r.stdout) == [], r.stdout
        assert other not in r.stdout


def test_template_root_not_writable_from_app_qube(ns_env):
    tmpl_passwd = (ns_env.template / "etc/passwd").read_bytes()
    q = ns_env.qube("fs2")
    q.start()
    q.sh("echo 'evil::0:0::/:/bin/sh' >> /etc/passwd; rm -f /etc/group; touch /evil", check=True)
    assert (ns_env.template / "etc/passwd").read_bytes() == tmpl_passwd
    assert (ns_env.template / "etc/group").exists()
    assert not (ns_env.template / "evil").exists()
    # host /usr: read-only, and locked so (no remount, no unmount to reveal)
    r = q.sh("touch /usr/bin/evil 2>&1; mount -o remount,rw /usr 2>&1; mount -o remount,bind,rw /usr 2>&1; "
             "umount /usr 2>&1; umount -l /usr 2>&1; touch /usr/evil 2>&1; echo done")
    assert "done" in r.stdout
    assert not os.path.exists("/usr/bin/evil") and not os.path.exists("/usr/evil")
    # restart: the qube's changes were thrown away
    q.kill()
    q.start()
    assert "evil" not in q.sh("cat /etc/passwd").stdout
    assert q.sh("test -e /etc/group && echo present").stdout.strip() == "present"


def test_bulkhead_programs_not_writable(ns_env):
    init = BUILD / "src/agent/bulkhead-init"
    before = hashlib.sha256(init.read_bytes()).hexdigest()
    q = ns_env.qube("fs3")
    q.start()
    r = attack(q, """
for path in ("/proc/1/exe", "/usr/lib/bulkhead/bulkhead-init", "/proc/self/exe"):
    try:
        fd = os.open(path, os.O_WRONLY)
        os.write(fd, b"pwned")
        print("WROTE", path)
    except OSError as e:
        print("denied", path, e.errno)
try:
    os.rename("/usr/lib/bulkhead/bulkhead-init", "/usr/lib/bulkhead/x")
    print("RENAMED")
except OSError as e:
    print("denied rename", e.errno)
""")
    assert "WROTE" not in r.stdout and "RENAMED" not in r.stdout, r.stdout
    assert hashlib.sha256(init.read_bytes()).hexdigest() == before
    # the exec helper's binary, reached through a process that joined the qube
    ns_bin = BUILD / "src/driver/bulkhead-ns"
    ns_before = hashlib.sha256(ns_bin.read_bytes()).hexdigest()
    r = q.sh("n=0; for p in /proc/[0-9]*; do n=$((n+1)); (echo x >> $p/exe) 2>/dev/null && echo WROTE $p; done; echo tried=$n")
    assert "WROTE" not in r.stdout
    assert int(r.stdout.split("tried=")[1]) >= 2, r.stdout  # the loop ran over real processes
    assert hashlib.sha256(ns_bin.read_bytes()).hexdigest() == ns_before


def test_mounting_is_denied(ns_env):
    q = ns_env.qube("fs4")
    q.start()
    r = q.sh("""
mkdir -p /tmp/m
for args in "-t proc proc /tmp/m" "-t tmpfs t /tmp/m" "-t sysfs s /tmp/m" "--bind / /tmp/m" \
            "-t cgroup -o memory cg /tmp/m" "-t cgroup2 cg /tmp/m" "-t ext4 /dev/vda /tmp/m" \
            "-t overlay o -olowerdir=/usr,upperdir=/tmp,workdir=/run /tmp/m" "-t devpts d /tmp/m" \
            "-t mqueue m /tmp/m" "-t fuse f /tmp/m"; do
  if mount $args 2>/dev/null; then echo "MOUNTED $args"; else echo "refused rc=$?"; fi
done
unshare -m sh -c 'mount -t tmpfs t /tmp/m && echo MOUNTED-in-new-ns' 2>/dev/null; echo "unshare-m rc=$?"
unshare -U -r -m --propagation unchanged -p -f sh -c 'echo NESTED-USERNS; for t in tmpfs proc sysfs mqueue; do mount -t $t x /tmp/m 2>/dev/null && echo MOUNTED-nested-$t; done; mount --bind / /tmp/m 2>/dev/null && echo MOUNTED-nested-bind; echo nested-done' 2>/dev/null
echo end
""")
    assert r.stdout.splitlines()[-1] == "end", r.stdout
    assert "MOUNTED" not in r.stdout, r.stdout
    # every attempt ran and failed (mount(8) exits 32 on a failed mount; a missing
    # mount(8) or shell would show 127 or no lines at all)
    assert r.stdout.count("refused rc=32") == 11, r.stdout
    assert "unshare-m rc=1" in r.stdout, r.stdout
    # Positive control: the nested user namespace (allowed, counted: test_ns_limits.py)
    # was made, so its mount attempts ran with that namespace's full capabilities.
    assert "NESTED-USERNS" in r.stdout and "nested-done" in r.stdout, r.stdout
    r = attack(q, """
for name, nr in (("fsopen", 430), ("fspick", 433), ("mount_setattr", 442)):
    r, e = sc(nr, 0, 0, 0, 0)
    print(name, r, e)
print("control-getpid", *sc(39))
""")
    lines = r.stdout.splitlines()
    assert [l.split()[0] for l in lines] == ["fsopen", "fspick", "mount_setattr", "control-getpid"], r.stdout + r.stderr
    for line in lines[:3]:
        assert line.split()[1:] == ["-1", "1"], r.stdout  # EPERM
    assert int(lines[3].split()[1]) > 0  # the same syscall path works for an allowed call


def test_procfs_and_sysfs_tricks(ns_env):
    host_core = pathlib.Path("/proc/sys/kernel/core_pattern").read_text()
    host_name = os.uname().nodename
    q = ns_env.qube("fs5")
    q.start()
    r = q.sh("""
echo '|/tmp/evil' > /proc/sys/kernel/core_pattern 2>/dev/null && echo CORE
# masked files read as empty and swallow writes (a bind of /dev/null): what counts is
# that nothing reaches the kernel. 'h' only prints help if it does.
null=$(stat -L -c %t:%T /dev/null)
[ "$(stat -c %t:%T /proc/sysrq-trigger 2>/dev/null)" = "$null" ] && echo SYSRQ-MASKED
[ "$(stat -c %t:%T /proc/kcore 2>/dev/null)" = "$null" ] && echo KCORE-MASKED
[ "$(stat -c %t:%T /proc/sysrq-trigger 2>/dev/null)" != "$null" ] && echo h > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo DROP
[ "$(head -c 16 /proc/kcore 2>/dev/null | wc -c)" -gt 0 ] && echo KCORE
head -c 16 /dev/mem >/dev/null 2>&1 && echo MEM
cat /proc/kmsg >/dev/null 2>&1 & sleep 0.2; kill $! 2>/dev/null
echo 1 > /sys/kernel/mm/ksm/run 2>/dev/null && echo SYSFS
ls /sys/fs/cgroup 2>/dev/null | head -1
echo evil > /proc/sys/kernel/hostname && echo OWN-HOSTNAME
echo end
""")
    assert "end" in r.stdout
    for bad in ("CORE", "SYSRQ", "DROP", "KCORE", "MEM", "SYSFS"):
        assert bad not in r.stdout.split(), r.stdout
    # where the kernel has these files, the engine masks them (kernels built without
    # them, as this project's test hosts may be, have nothing to mask)
    for f, mark in (("/proc/sysrq-trigger", "SYSRQ-MASKED"), ("/proc/kcore", "KCORE-MASKED")):
        if os.path.exists(f):
            assert mark in r.stdout.split(), r.stdout
    assert pathlib.Path("/proc/sys/kernel/core_pattern").read_text() == host_core
    assert os.uname().nodename == host_name


def host_release_agents():
    """Every release_agent of the host's v1 hierarchies (none on a v2-only host)."""
    roots = {m for c, m in cgroup_mounts().items() if c}
    return {str(r): (r / "release_agent").read_text() for r in roots if (r / "release_agent").exists()}


def test_cgroup_escape(ns_env):
    agents = host_release_agents()
    q = ns_env.qube("fs6")
    q.start()
    own = q.cgroup("memory") if "memory" in q.cgroups else q.cgroup("")
    r = q.sh("""
mkdir -p /tmp/cg
for t in "-t cgroup -o memory" "-t cgroup -o rdma" "-t cgroup -o none,name=evil" "-t cgroup2"; do
  if mount $t cgroup /tmp/cg 2>/dev/null; then echo "MOUNTED $t"; else echo "refused rc=$?"; fi
done
echo "fs=$(stat -f -c %T /tmp/cg)"
grep -c ' - cgroup' /proc/self/mountinfo
# no guard: every write is tried, and says what happened
for f in /sys/fs/cgroup/memory/release_agent /sys/fs/cgroup/release_agent /sys/fs/cgroup/memory/notify_on_release \
         /sys/fs/cgroup/memory/cgroup.procs /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/cgroup.subtree_control; do
  if (echo /tmp/evil > $f) 2>/dev/null; then echo "WROTE $f"; else echo "denied $f"; fi
done
# control: the same write works where writing is allowed
f=/tmp/control; if (echo x > $f) 2>/dev/null; then echo "wrote-control"; fi
cat /proc/self/cgroup
echo end
""")
    out = r.stdout
    assert out.splitlines()[-1] == "end", out
    assert "MOUNTED" not in out and "WROTE" not in out, out
    assert out.count("refused rc=32") == 4 and out.count("denied ") == 6 and "wrote-control" in out, out
    assert "fs=tmpfs" in out or "fs=overlayfs" in out or "fs=ext2/ext3" in out, out  # still a plain dir
    assert "\n0\n" in out, out  # no cgroup filesystem mounted anywhere inside
    # nothing changed on the host: release agents, and the qube's own cgroup
    assert host_release_agents() == agents
    assert all("/tmp/evil" not in v for v in agents.values())
    if (own / "notify_on_release").exists():
        assert (own / "notify_on_release").read_text().strip() == "0"
    # its own cgroup appears as the root: nothing above is named
    cg_lines = [l for l in out.splitlines() if l.count(":") >= 2 and l.split(":")[0].isdigit()]
    assert cg_lines and all(l.endswith(":/") for l in cg_lines), out
    assert ns_env.cgroup_tag() not in out


def test_mknod_and_devices(ns_env):
    q = ns_env.qube("fs7")
    q.start()
    r = q.sh("""
mknod /tmp/vda b 253 0 2>/dev/null && echo MKNOD
mknod /dev/mem2 c 1 1 2>/dev/null && echo MKNOD
ls /dev
head -c 1 /dev/vda 2>/dev/null && echo VDA
echo end
""")
    assert r.stdout.splitlines()[-1] == "end", r.stdout
    assert "MKNOD" not in r.stdout and "VDA" not in r.stdout
    devs = set(r.stdout.split()) - {"end"}
    assert {"null", "zero", "tty"} <= devs, devs  # control: ls listed the qube's /dev
    assert devs <= {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
                    "fd", "stdin", "stdout", "stderr", "fuse"}, devs


def test_disk_fill_is_bounded(ns_env):
    q = ns_env.qube("fs8", private_mib=16)
    q.start()
    img = ns_env.base / "fs8-private.img"
    size = img.stat().st_size
    r = q.sh("dd if=/dev/zero of=/rw/fill bs=1M count=200 2>&1; echo rc=$?; df -k /rw | tail -1")
    assert "No space left" in r.stdout or "rc=1" in r.stdout, r.stdout
    assert img.stat().st_size == size
    used_kib = int(r.stdout.split()[-4])
    assert used_kib * 1024 <= size
    # the throwaway root is bounded too (tmpfs of volatile size / memory)
    q.kill()
    q2 = ns_env.qube("fs9", private=False, extra=["--volatile-bytes", str(8 << 20)])
    q2.start()
    r = q2.sh("dd if=/dev/zero of=/opt/fill bs=1M count=100 2>&1; echo rc=$?")
    assert "No space left" in r.stdout, r.stdout


def test_chroot_escape(ns_env):
    marker = ns_env.base / "escape-marker"
    marker.write_text("x")
    q = ns_env.qube("fs10")
    q.start()
    r = attack(q, """
os.makedirs("/tmp/jail", exist_ok=True)
fd = os.open("/", os.O_RDONLY)
os.chroot("/tmp/jail")
os.fchdir(fd)
for _ in range(64):
    os.chdir("..")
os.chroot(".")
print(sorted(os.listdir("/")))
print(os.path.exists(%r))
""" % str(marker))
    assert r.stdout.strip().endswith("False"), r.stdout + r.stderr
    assert "bh-ns" not in r.stdout


def test_setuid_does_not_raise_beyond_qube(ns_env):
    q = ns_env.qube("fs11")
    q.start()
    q.sh("cp /usr/bin/id /opt/suid-id && chmod 4755 /opt/suid-id && ls -l /opt/suid-id", check=True)
    r = q.exec("/opt/suid-id", "-u", user="user")
    # no_new_privs: the setuid bit gives nothing, not even the qube's root
    assert r.stdout.strip() == "1000", r.stdout + r.stderr
    # host setuid programs (sudo/su/passwd from host /usr) cannot raise either
    r = q.exec("/bin/sh", "-c", "for p in /usr/bin/passwd /usr/bin/su /usr/bin/sudo; do "
               "[ -u $p ] && $p --help >/dev/null 2>&1; done; id -u", user="user")
    assert r.stdout.strip().endswith("1000")
    # and the qube's root is a host nobody: its files on a host fs belong to its range
    st = os.stat(f"/proc/{q.init_pid()}")
    assert st.st_uid == q.uid_base


def test_vchan_dir_cannot_fill_host(ns_env):
    # The one host directory a qube can write (its qrexec socket dir) is a tiny tmpfs.
    q = ns_env.qube("fs12", private=False)
    q.start()
    r = q.sh("dd if=/dev/zero of=/run/qubes/vchan/fill bs=1M count=64 2>&1; echo rc=$?; "
             "i=0; while [ $i -lt 200 ] && touch /run/qubes/vchan/f$i 2>/dev/null; do i=$((i+1)); done; echo files=$i")
    assert "No space left" in r.stdout, r.stdout
    assert int(r.stdout.split("files=")[1]) < 100
    size = sum(f.stat().st_size for f in (q.runtime_dir / "vchan").iterdir())
    assert size <= 64 << 10
    q.kill()
    assert not (q.runtime_dir / "vchan").exists()
    assert str(q.runtime_dir) not in pathlib.Path("/proc/self/mountinfo").read_text()


def test_proc_host_state_masked(ns_env):
    q = ns_env.qube("fs13", private=False)
    q.start()
    r = q.sh("for f in keys timer_list sched_debug kallsyms sysrq-trigger version; do "
             "[ -e /proc/$f ] && echo $f $(wc -c < /proc/$f 2>/dev/null || echo unreadable); done; echo end")
    seen = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line != "end")
    assert r.stdout.splitlines()[-1] == "end", r.stdout
    assert int(seen["version"]) > 0, r.stdout  # control: an unmasked file reads as usual
    for f in ("keys", "timer_list", "sched_debug", "kallsyms"):
        if os.path.exists(f"/proc/{f}"):  # what the host has, the qube sees empty
            assert seen.get(f) == "0", (f, r.stdout)
    assert seen.get("sysrq-trigger", "0") in ("0", "unreadable"), r.stdout


def test_symlinked_home_on_private_volume(ns_env):
    # The qube's root plants symlinks where the engine mounts at the next start; the
    # engine (host root) must never follow them into the host's tree.
    marker = ns_env.base / "host-only-marker"
    marker.write_text("HOST-ONLY\n")
    q = ns_env.qube("fs14")
    q.start()
    q.sh("rm -rf /rw/home && ln -s / /rw/home && ls -la /rw", check=True)
    q.kill()
    r = q.start(check=False)
    if r.returncode == 0:
        out = q.sh("ls -a /home; cat /home%s 2>&1" % marker).stdout
        assert "HOST-ONLY" not in out
        assert "bh-ns" not in out
    else:
        assert "rw/home" in r.stderr
        assert q.state() == "Halted"
    # relative escapes too
    q.kill()
    q2 = ns_env.qube("fs15")
    q2.start()
    q2.sh("rm -rf /rw/home && ln -s ../../../../../../.. /rw/home", check=True)
    q2.kill()
    r = q2.start(check=False)
    if r.returncode == 0:
        assert "HOST-ONLY" not in q2.sh("cat /home%s 2>&1" % marker).stdout


def test_symlinked_mount_points_in_template_root(ns_env):
    # A template qube (persistent root) replaces the engine's mount points by symlinks
    # into the host's tree; the next starts of it and of its app qubes must not create,
    # mount or expose anything on the host.
    root = make_root(ns_env.base / "evil-tmpl")
    t = ns_env.qube("fs16", root_rw=root, private=False)
    t.start()
    t.sh("rmdir /rw /home /opt; ln -s /etc /rw; ln -s /etc/bulkhead-evil /home; ln -s / /opt", check=True)
    t.kill()
    before = set(os.listdir("/etc"))
    app = ns_env.qube("fs17", private=True)
    app.args[app.args.index("--root-lower") + 1] = str(root)
    r = app.start(check=False)
    assert set(os.listdir("/etc")) == before, "the engine created something in the host's /etc"
    if r.returncode == 0:
        out = app.sh("ls /rw /home 2>&1; cat /rw/shadow 2>&1").stdout
        assert pathlib.Path("/etc/shadow").read_text().splitlines()[0] not in out
    else:
        assert "not a plain directory" in r.stderr, r.stderr
    r = t.start(check=False)
    assert set(os.listdir("/etc")) == before


def test_hostile_passwd_does_not_hang_or_escape(ns_env):
    # exec --user parses the qube's /etc/passwd: a FIFO, a huge file or garbage must
    # make it fail fast, never hang the host-side tool or pick a host-range ID.
    q = ns_env.qube("fs18", private=False)
    q.start()
    q.sh("rm /etc/passwd && mkfifo /etc/passwd", check=True)
    r = q.exec("id", "-u", user="user", timeout=20)
    assert r.returncode != 0
    q.sh("rm /etc/passwd && printf 'user:x:99999999:0::/:/bin/sh\\n' > /etc/passwd", check=True)
    assert q.exec("id", "-u", user="user", timeout=20).returncode != 0
    q.sh("rm /etc/passwd && head -c 3000000 /dev/zero | tr '\\\\0' 'a' > /etc/passwd", check=True)
    assert q.exec("id", "-u", user="user", timeout=20).returncode != 0
    assert q.exec("id", "-u").stdout.strip() == "0"


def test_engine_state_invisible(ns_env):
    # Nothing of the host-side runtime (pidfiles, other qubes' dirs, images, the store)
    # is reachable from inside a qube.
    other = ns_env.qube("fs19")
    other.start()
    (ns_env.base / "qubes.db").write_text("STORE-MARKER\n")
    q = ns_env.qube("fs20")
    q.start()
    r = q.sh("find / -xdev \\( -path /usr -o -path /proc -o -path /sys \\) -prune -o "
             "\\( -name init.pid -o -name qubes.db -o -name '*.img' -o -name fs19 \\) -print 2>/dev/null; "
             "ls -a /run/qubes/vchan; echo end")
    assert r.stdout.strip().splitlines()[-1] == "end"
    found = [l for l in r.stdout.splitlines() if l not in (".", "..", "end") and not l.startswith("vchan.")]
    assert found == [], found
