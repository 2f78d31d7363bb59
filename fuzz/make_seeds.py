#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz harnesses into fuzz/seeds/<name>/.

Each seed is a well-formed input that reaches one deep path of its harness (a valid
message of each type, a whole file-copy tree, an allowed policy call, ...) so that the
fuzzer mutates from there instead of from nothing. Binary formats are built here from
their definitions (docs/admin.md, docs/qrexec.md) rather than kept as opaque blobs; run this script again
after changing a format, then `scripts/fuzz.sh --minimise NAME`.

Seeds already in fuzz/seeds/ that this script does not write (older hand-written ones)
are left alone.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def put(harness, name, data):
    d = os.path.join(HERE, "seeds", harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- qrexec messages (docs/qrexec.md): {u32 type; u32 len} little-endian, then body ----
DATA_STDIN, DATA_STDOUT, DATA_STDERR, DATA_EXIT_CODE = 0x190, 0x191, 0x192, 0x193
EXEC_CMDLINE, JUST_EXEC, SERVICE_CONNECT, SERVICE_REFUSED = 0x200, 0x201, 0x202, 0x203
CONNECTION_TERMINATED, TRIGGER_SERVICE3, TRIGGER_SERVICE4, HELLO = 0x211, 0x212, 0x213, 0x300


def msg(mtype, body=b""):
    return struct.pack("<II", mtype, len(body)) + body


def fixed(s, n):
    b = s.encode() if isinstance(s, str) else s
    return b + b"\0" * (n - len(b))


def qrexec_stream():
    # what a requester reads from the service side: output chunks, their EOFs, the exit code
    out = b"Fri Dec  4 20:00:00 UTC 2026\n"
    put("qrexec_stream", "date", msg(DATA_STDOUT, out) + msg(DATA_STDOUT) + msg(DATA_STDERR) + msg(DATA_EXIT_CODE, struct.pack("<i", 0)))
    put("qrexec_stream", "stderr_control_chars",
        msg(DATA_STDERR, b"warn \x1b[31mred\x1b[0m\x07\x00\xff\n") + msg(DATA_STDOUT, b"\x1b]0;title\x07x\r\n") +
        msg(DATA_STDOUT) + msg(DATA_STDERR) + msg(DATA_EXIT_CODE, struct.pack("<i", 1)))
    put("qrexec_stream", "big_chunks", msg(DATA_STDOUT, b"A" * 65536) + msg(DATA_STDOUT, b"B" * 1000) + msg(DATA_STDOUT) +
        msg(DATA_EXIT_CODE, struct.pack("<i", -1)))
    put("qrexec_stream", "no_exit_code", msg(DATA_STDOUT, b"cut off") + msg(DATA_STDOUT))
    put("qrexec_stream", "exit_then_more", msg(DATA_EXIT_CODE, struct.pack("<i", 3)) + msg(DATA_STDOUT, b"late"))
    put("qrexec_stream", "stdin_from_service", msg(DATA_STDIN, b"not for us") + msg(DATA_EXIT_CODE, struct.pack("<i", 0)))


# ---- qubes.Filecopy (docs/qrexec.md, "File copy") ----
S_IFREG, S_IFDIR, S_IFLNK = 0o100000, 0o040000, 0o120000


def fc_entry(name, mode, data=b"", t=1700000000):
    n = name.encode() + b"\0"
    return struct.pack("<IIQIIII", len(n), mode, len(data), t, 5, t, 7) + n + data


def fc_dir(name, t=1700000000):
    return fc_entry(name, S_IFDIR | 0o755, b"", t)


FC_END = b"\0" * 32


def qfile_unpack():
    put("qfile_unpack", "one_file", fc_entry("hello.txt", S_IFREG | 0o644, b"hello\n") + FC_END)
    tree = (fc_dir("docs") + fc_entry("docs/a.txt", S_IFREG | 0o600, b"a" * 100) +
            fc_dir("docs/sub") + fc_entry("docs/sub/b", S_IFREG | 0o755, b"") +
            fc_entry("docs/sub/link", S_IFLNK | 0o777, b"../a.txt") +
            fc_entry("docs/sub/self", S_IFLNK | 0o777, b"b") + fc_entry("docs/up", S_IFLNK | 0o777, b"sub/b") +
            fc_dir("docs/sub") + fc_dir("docs") + FC_END)
    put("qfile_unpack", "tree_with_links", tree)
    put("qfile_unpack", "escape_dotdot", fc_entry("../x", S_IFREG | 0o644, b"x") + FC_END)
    put("qfile_unpack", "escape_symlink", fc_dir("d") + fc_entry("d/l", S_IFLNK | 0o777, b"../../canary") + FC_END)
    # a link to "." makes "y/y/../.." climb one level higher than it reads
    put("qfile_unpack", "escape_link_chain", fc_dir("d") + fc_entry("d/y", S_IFLNK | 0o777, b".") +
        fc_entry("d/z", S_IFLNK | 0o777, b"y/y/../..") + FC_END)
    put("qfile_unpack", "escape_link_chain2", fc_dir("d") + fc_dir("d/e") + fc_entry("d/e/u", S_IFLNK | 0o777, b"..") +
        fc_entry("d/z", S_IFLNK | 0o777, b"e/u/e/u/../../..") + FC_END)
    put("qfile_unpack", "through_symlink",
        fc_dir("d") + fc_dir("d/e") + fc_entry("d/l", S_IFLNK | 0o777, b"e") + fc_entry("d/l/x", S_IFREG | 0o644, b"x") + FC_END)
    put("qfile_unpack", "file_twice", fc_entry("f", S_IFREG | 0o644, b"1") + fc_entry("f", S_IFREG | 0o644, b"2") + FC_END)
    put("qfile_unpack", "dir_over_file", fc_entry("f", S_IFREG | 0o644, b"1") + fc_dir("f") + FC_END)
    put("qfile_unpack", "truncated", fc_entry("t", S_IFREG | 0o644, b"0123456789")[:-4])
    put("qfile_unpack", "fifo", fc_entry("p", 0o010644) + FC_END)


def policy_eval():
    # source, target and service as the daemon hands them over: three NUL-separated strings
    calls = {
        "filecopy_ask": ("work", "@default", "qubes.Filecopy"),
        "filecopy_tags": ("work", "personal", "qubes.Filecopy+x"),
        "openinvm_dispvm": ("work", "@dispvm", "qubes.OpenInVM"),
        "openinvm_named_dispvm": ("personal", "@dispvm:dvm", "qubes.OpenInVM"),
        "adminvm": ("work", "@adminvm", "qubes.GetDate"),
        "uuid_target": ("work", "uuid:11111111-2222-3333-4444-555555555555", "a.b+c"),
        "dispvm_source": ("disp1", "dvm", "a.b"),
        "tag_dispvm": ("work", "@dispvm:@tag:t1", "qubes.OpenInVM"),
        "default_dispvm_ask": ("work", "@dispvm:dvm", "a.b+d"),
        "unknown": ("nosuch", "work", "x.y"),
    }
    for name, (s, t, v) in calls.items():
        put("policy_eval", name, f"{s}\0{t}\0{v}")


def ask_proto():
    q = ("bulkhead-ask 1\nsource work\nservice qubes.Filecopy+arg\ndefault personal\n"
         "choice personal\nchoice vault\nchoice @dispvm:default-dvm\nend\n")
    put("ask_proto", "question", q)
    put("ask_proto", "question_no_default", "bulkhead-ask 1\nsource work\nservice qubes.GetDate\ndefault \nchoice dom0\nend\n")
    put("ask_proto", "answer_allow", "allow c\n")
    put("ask_proto", "answer_allow_dispvm", "allow @dispvm:d\n")
    put("ask_proto", "answer_deny", "deny\n")


def vmexec_decode():
    put("vmexec_decode", "ls", "ls+-2Fetc")
    put("vmexec_decode", "shell", "sh+--c+echo-20hello-3B-20rm--rf")
    put("vmexec_decode", "utf8", "touch+-C3-A9t-C3-A9.txt")
    put("vmexec_decode", "escaped_nul", "a+b-00")
    put("vmexec_decode", "dots", "..+.+_")


def ns():
    put("ns_passwd", "debian",
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "user:x:1000:1000:User,,,:/home/user:/bin/bash\n")
    put("ns_passwd", "odd", "a:x:65535:65535::/:\nuser::1000:1000\nuser:x:1000:1000::/home/user\n+::::::\n")
    put("ns_passwd", "huge_ids", "user:x:4294967295:99999999999:x:/home/user:/bin/sh\n")
    put("ns_pidfile", "pidfile", "4242 1234567 4026531837\n")
    put("ns_pidfile", "stat",
        "4242 (bash) S 1 4242 4242 34816 4242 4194560 1234 0 0 0 1 2 0 0 20 0 1 0 1234567 8429568 1234 "
        "18446744073709551615 1 1 0 0 0 0 65536 3686404 1266761467 0 0 0 17 1 0 0 0 0 0\n")
    put("ns_pidfile", "stat_hostile_comm",
        "4242 (a) S 1 2 3 4 5 (b) ) R 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0\n")


def storage_args():
    # "NAME|ARG": NAME is the qube, ARG the volume or revision name; the whole is a size
    for name, s in {
        "size": "16M", "size_units": "1073741824", "size_huge": "18446744073709551615T",
        "info_private": "work|private", "info_root": "tpl|root", "snapshots": "work|private",
        "revert_newest": "work|private|", "revert_root": "tpl|root|", "revert_named": "work|private|1700000000",
        "revert_dotdot": "work|private|../../tpl", "revert_volatile": "work|volatile|",
        "name_dotdot": "..|private", "name_slash": "work/../tpl|private", "volatile": "work|volatile",
    }.items():
        put("storage_args", name, s)


def tools_fwrule():
    for name, line in {
        "accept_tcp": "action=accept dst4=192.168.1.0/24 proto=tcp dstports=443-443",
        "drop_icmp": "action=drop proto=icmp icmptype=8",
        "dsthost": "action=accept dsthost=qubes-os.org",
        "dst6": "action=accept dst6=2001:db8::/32 proto=udp dstports=53-53",
        "dns": "action=accept specialtarget=dns",
        "expire_comment": "action=drop expire=1700000000 comment=no more",
    }.items():
        put("tools_fwrule", name, line)


def admin_props():
    # one Admin API request: "METHOD+ARG SOURCE name DEST\0PAYLOAD"
    def r(name, method, dest, payload=""):
        if "+" not in method:
            method += "+"  # qrexec always sends the '+', with an empty argument
        put("admin_props", name, f"{method} dom0 name {dest}\0{payload}")

    r("start", "admin.vm.Start", "work")
    r("start_netvm_chain", "admin.vm.Start", "personal")
    r("kill", "admin.vm.Kill", "work")
    r("pause", "admin.vm.Pause", "work")
    r("unpause", "admin.vm.Unpause", "work")
    r("shutdown", "admin.vm.Shutdown", "sys-firewall")
    r("shutdown_force", "admin.vm.Shutdown+force", "sys-net")
    r("disposable", "admin.vm.CreateDisposable", "default-dvm")
    r("remove", "admin.vm.Remove", "untrusted")
    r("current_state", "admin.vm.CurrentState", "sys-net")
    r("prop_running", "admin.vm.property.Set+template", "work", "host")
    r("start_fail_memory", "admin.vm.property.Set+memory", "vault", "401")
    r("start_vault", "admin.vm.Start", "vault")
    r("create_broken", "admin.vm.Create.AppVM+host", "dom0", "name=vol-broken label=red")
    r("start_broken", "admin.vm.Start", "vol-broken")


def admin_firewall():
    put("admin_firewall", "full_set",
        "action=accept dst4=10.137.0.0/16 proto=tcp dstports=22-22 comment=ssh\n"
        "action=accept dst6=fd09:24ef:4179::/48 proto=udp dstports=53-53\n"
        "action=drop proto=icmp icmptype=8\n"
        "action=accept dsthost=example.com expire=1700000000\n"
        "action=accept specialtarget=dns\n"
        "action=drop\n")
    put("admin_firewall", "bad_prefix", "action=accept dst4=10.0.0.1/33\naction=drop\n")


def admin_request():
    for name, req in {
        "keyword": "admin.vm.List+ dom0 keyword adminvm\0",
        "payload": "admin.vm.firewall.Set+ work name work\0action=drop\n",
        "long_arg": "admin.vm.feature.Set+" + "x" * 200 + " dom0 name work\0v",
        "bad_type": "admin.vm.List+ dom0 uuid 1234\0",
    }.items():
        put("admin_request", name, req)


def dns_answer(qtype, answers, name=b"\x03web\x04test\x00", rcode=0):
    """A DNS response: one question, then answers (type, rdata), names compressed."""
    head = struct.pack("!HHHHHH", 0x1234, 0x8180 | rcode, 1, len(answers), 0, 0)
    msg = head + name + struct.pack("!HH", qtype, 1)
    for t, rdata in answers:
        msg += b"\xc0\x0c" + struct.pack("!HHIH", t, 1, 5, len(rdata)) + rdata
    return msg


def net_dnsans():
    v6 = bytes.fromhex("20010db8000000000000000000000080")
    put("net_dnsans", "a_two", dns_answer(1, [(1, bytes([192, 0, 2, 1])), (1, bytes([192, 0, 2, 2]))]))
    put("net_dnsans", "aaaa_one", dns_answer(28, [(28, v6)]))
    put("net_dnsans", "mixed_and_wrong_sizes", dns_answer(28, [(5, b"\x03cdn\xc0\x0c"), (28, v6), (1, b"\x01\x02\x03\x04"),
                                                              (28, b"\x01\x02\x03\x04")]))
    put("net_dnsans", "nxdomain", dns_answer(1, [], rcode=3))
    put("net_dnsans", "many", dns_answer(1, [(1, bytes([10, 0, 0, i])) for i in range(8)]))


def main():
    net_dnsans()
    admin_firewall()
    admin_request()
    qrexec_stream()
    qfile_unpack()
    policy_eval()
    ask_proto()
    vmexec_decode()
    ns()
    storage_args()
    tools_fwrule()
    admin_props()


if __name__ == "__main__":
    sys.exit(main())
