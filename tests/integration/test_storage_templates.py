"""Templates: the offline `host` template (checked by running programs in it, with the
host's /usr bound read-only as the engine does) and Debian templates via debootstrap."""
import os
import pathlib
import subprocess

import pytest

from storage_fixtures import storage  # noqa: F401

# What the host template's /etc may contain: our own files and the harmless host files
# named in template_host.c, nothing else.
ALLOWED_ETC = {
    "passwd", "group", "shadow", "gshadow", "hostname", "hosts", "resolv.conf", "nsswitch.conf",
    "shells", "profile", "fstab", "bulkhead-template", "mtab", "pam.d", "skel", "ld.so.cache",
    "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone", "protocols", "services",
    "rpc", "ethers", "bash.bashrc", "inputrc", "ssl", "os-release", "debian_version", "mime.types",
    "login.defs", "fonts", "ca-certificates.conf",
}


def in_template(root, script):
    """Runs script with root as / (host /usr bound read-only) in a throwaway mount
    namespace: every mount goes away with the namespace."""
    wrapper = (f'set -e; R="{root}"; mount --bind /usr "$R/usr"; mount -o remount,bind,ro "$R/usr"; '
               f'mount -t proc proc "$R/proc"; exec chroot "$R" /bin/bash -c "$0"')
    return subprocess.run(["unshare", "-m", "-p", "-f", "--propagation", "private", "sh", "-c", wrapper, script],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def host_root(storage):
    r = subprocess.run([storage.qvm_template, "--root", str(storage.root), "build", "host", "host"],
                       capture_output=True, text=True, check=True)
    assert "built template host" in r.stdout
    return storage.qdir("host") / "root"


def test_host_template_layout(host_root):
    for link, target in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")]:
        assert os.readlink(host_root / link) == target
    assert (host_root / "usr").is_dir() and list((host_root / "usr").iterdir()) == []
    assert os.stat(host_root / "tmp").st_mode & 0o7777 == 0o1777
    assert (host_root / "etc/resolv.conf").read_text() == "nameserver 10.139.1.1\nnameserver 10.139.1.2\n"
    assert "user:x:1000:1000:user:/home/user:/bin/bash\n" in (host_root / "etc/passwd").read_text()
    assert not (host_root / "etc/sudoers").exists() and not (host_root / "etc/sudoers.d").exists()


def test_host_template_has_no_host_secrets(host_root):
    assert set(os.listdir(host_root / "etc")) <= ALLOWED_ETC
    host_shadow = pathlib.Path("/etc/shadow").read_text()
    hashes = [line.split(":")[1] for line in host_shadow.splitlines() if line.count(":") > 2]
    ours = (host_root / "etc/shadow").read_text()
    assert all(h in ("*", "!", "!*", "x", "") or h not in ours for h in hashes)
    assert (host_root / "etc/hostname").read_text() != pathlib.Path("/etc/hostname").read_text()
    assert list((host_root / "home").iterdir()) == [] and list((host_root / "root").iterdir()) == []
    for dirpath, dirs, files in os.walk(host_root):
        for n in dirs + files:
            st = os.lstat(os.path.join(dirpath, n))
            assert st.st_uid == 0, f"{n} not owned by root"
            assert n not in ("ssh_host_rsa_key", "ssh_host_ed25519_key", ".bash_history", "id_rsa")
    assert not (host_root / "etc/ssl/private").exists()


def test_host_template_runs_programs(host_root):
    r = in_template(host_root, "id user; getent passwd user; awk 'BEGIN{print 6*7}'; "
                    "python3 -c 'import ssl, sqlite3; print(\"py ok\")'; getent hosts localhost; "
                    "runuser -u user -- id -un; cat /etc/hostname")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "uid=1000(user) gid=1000(user)" in out
    assert "user:x:1000:1000:user:/home/user:/bin/bash" in out
    assert "42\n" in out and "py ok\n" in out and "localhost" in out
    assert "\nuser\n" in out and out.endswith("localhost\n")
    # Nobody becomes root through PAM: there is no password and no sudoers.
    r = in_template(host_root, "runuser -u user -- su -c id root </dev/null")
    assert r.returncode != 0


def test_host_template_libraries_resolve_as_on_host(host_root):
    """With the host's /usr, every program links inside the template exactly as on the
    host (the copied ld.so.cache is consistent; without it the linker's default dirs
    still find the same libraries on a merged-usr Debian host)."""
    # Every fourth program of /usr/bin and /usr/sbin (all of them take ~15 s per side).
    script = ('for b in $(ls -d /usr/bin/* /usr/sbin/* | awk "NR % 4 == 0"); do '
              'ldd "$b" 2>/dev/null | grep -q "not found" && echo "$b"; done; true')
    inside = in_template(host_root, script)
    assert inside.returncode == 0, inside.stderr
    host = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert sorted(inside.stdout.split()) == sorted(host.stdout.split())


def test_qvm_template_list_and_adoption(storage, host_root):
    out = subprocess.run([storage.qvm_template, "--root", str(storage.root), "list"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].split() == ["NAME", "ORIGIN", "STATE", "USAGE"]
    assert out.splitlines()[1].split()[:3] == ["host", "host", "unclaimed"]
    # bulkheadd creating the TemplateVM adopts the built volumes.
    storage.run("create", "host", **{"class": "TemplateVM"})
    out = subprocess.run([storage.qvm_template, "--root", str(storage.root), "list"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1].split()[2] == "adopted"
    assert storage.run("create", "host", check=False, **{"class": "TemplateVM"}).returncode != 0
    r = subprocess.run([storage.qvm_template, "--root", str(storage.root), "build", "host", "host"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "already exist" in r.stderr
    assert storage.run("ensure-host").stdout == "exists\n"


def test_ensure_host_creates_once(storage):
    assert storage.run("ensure-host").stdout == "created\n"
    assert storage.run("ensure-host").stdout == "exists\n"
    assert (storage.qdir("host") / "root/etc/passwd").is_file()


def test_debian_bad_arguments_rejected(storage):
    for extra in (["--mirror", "ftp://example.org/debian"], ["--mirror", "http://x/\ny"],
                  ["--suite", "../../etc"], ["--suite", "-x"]):
        r = subprocess.run([storage.qvm_template, "--root", str(storage.root), "build", "debian", "deb"] + extra,
                           capture_output=True, text=True)
        assert r.returncode != 0
    assert not storage.qdir("deb").exists()


def test_debian_failure_leaves_nothing(storage):
    """An unreachable mirror (a closed port on loopback): the build fails, and no half
    template, temporary directory or mount stays behind."""
    r = subprocess.run([storage.qvm_template, "--root", str(storage.root), "build", "debian", "deb",
                        "--mirror", "http://127.0.0.1:9/debian"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "qvm-template:" in r.stderr
    # debootstrap really ran: its progress was shown, then its error.
    assert "[download 1]" in r.stderr and "E: Failed getting release file" in r.stderr
    assert "debootstrap exited with 1" in r.stderr
    assert not storage.qdir("deb").exists()
    assert storage.leftovers() == []


@pytest.mark.skipif(os.environ.get("BULKHEAD_TEST_NETWORK") != "1",
                    reason="downloads Debian: set BULKHEAD_TEST_NETWORK=1")
def test_debian_template_build(storage):
    r = subprocess.run([storage.qvm_template, "--root", str(storage.root), "build", "debian", "deb",
                        "--suite", "bookworm"], capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[download" in r.stderr and "[unpack" in r.stderr  # the progress display
    root = storage.qdir("deb") / "root"
    assert (root / "etc/debian_version").read_text().startswith("12")
    assert "user:x:1000:1000" in (root / "etc/passwd").read_text()
    assert (root / "etc/resolv.conf").read_text() == "nameserver 10.139.1.1\nnameserver 10.139.1.2\n"
    assert "sudo:" in (root / "etc/group").read_text() and ":user" in (root / "etc/group").read_text()
    assert storage.layout("deb", **{"class": "TemplateVM"})["host_usr"] == ""
    devs = subprocess.run(["find", str(root), "-xdev", "(", "-type", "b", "-o", "-type", "c", ")"],
                          capture_output=True, text=True, check=True).stdout
    assert devs == "", "device nodes left in the template's tree"
    assert "/deb/" not in open("/proc/self/mountinfo").read()  # debootstrap's mounts are gone
    out = subprocess.run([storage.qvm_template, "--root", str(storage.root), "list"],
                         capture_output=True, text=True, check=True).stdout
    assert "debian-bookworm" in out
