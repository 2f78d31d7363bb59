"""qubes.VMExec: qvm-run's exec path (QUBE COMMAND ARG... runs the argv in the qube
without a shell; arguments travel encoded as Qubes does: '+'-separated, '-XX' escapes),
from dom0 and from another qube under policy, and hostile encodings from a qube."""

import pytest

from admin_fixtures import engine_daemon, qvm_run  # noqa: F401


def encode(args):
    """Qubes' encoding (qubesadmin's encode_for_vmexec), written from its description."""
    out = []
    for a in args:
        part = ""
        for b in a.encode():
            c = chr(b)
            if c.isascii() and (c.isalnum() or c in "_."):
                part += c
            elif c == "-":
                part += "--"
            else:
                part += "-%02X" % b
        out.append(part)
    return "+".join(out)


ARGS = ["a b", "$HOME", "", "x-y", "--", "semi;colon", "quote'\"", "\u00fc", "new\nline", "+plus+", "*"]


def test_qvm_run_with_arguments_runs_them_exactly(engine_daemon):
    d = engine_daemon
    r = qvm_run(d, "-p", "a", "printf", "[%s]\\n", *ARGS)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "".join(f"[{a}]\n" for a in ARGS)
    # the exit code comes through, and no shell was involved
    r = qvm_run(d, "-p", "a", "sh", "-c", "exit 7")
    assert r.returncode == 7
    r = qvm_run(d, "-p", "--no-shell", "a", "true; echo shell")
    assert r.returncode == 127 and r.stdout == b""
    r = qvm_run(d, "-p", "a", "/no/such/program", "x")
    assert r.returncode == 127
    # one argument without --no-shell stays a shell command line, as in Qubes
    r = qvm_run(d, "-p", "a", "echo one; echo two")
    assert r.stdout == b"one\ntwo\n"


def test_vmexec_encoding_is_qubes(engine_daemon):
    """dom0 calls qubes.VMExec+ENCODED as Qubes' tools would."""
    d = engine_daemon
    assert qvm_run(d, "a", "true").returncode == 0
    svc = "qubes.VMExec+" + encode(["printf", "%s|", *ARGS])
    r = qvm_run(d, "-p", "--service", "a", svc)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "".join(f"{a}|" for a in ARGS)


def test_vmexec_from_another_qube_under_policy(engine_daemon):
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.VMExec  *  a  b  allow\n")
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    cvm = "/usr/lib/bulkhead/qrexec-client-vm"
    svc = "qubes.VMExec+" + encode(["sh", "-c", "hostname; echo \"$0|$1\"", "x y", "z"])
    r = qvm_run(d, "-p", "--user", "root", "a", f"{cvm} b '{svc}' </dev/null")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"b\nx y|z\n"
    # hostile encodings run nothing (exit 2 from the service)
    for bad in ("-", "id+-", "id+-2f", "id+-00", "id+-G1", "-2Fbin-2Fsh+-00-c"):
        r = qvm_run(d, "-p", "--user", "root", "a", f"{cvm} b 'qubes.VMExec+{bad}' </dev/null; echo rc=$?")
        assert r.stdout.endswith(b"rc=2\n"), (bad, r.stdout, r.stderr)
    # bytes outside the alphabet never reach the service: refused on the way
    for bad in ("id;reboot", "id$(reboot)", "id 1"):
        r = qvm_run(d, "-p", "--user", "root", "a", f"{cvm} b 'qubes.VMExec+{bad}' </dev/null; echo rc=$?")
        assert not r.stdout.endswith(b"rc=0\n"), (bad, r.stdout)
    (pol / "10-test.policy").write_text("")
    r = qvm_run(d, "-p", "--user", "root", "a", f"{cvm} b 'qubes.VMExec+id' </dev/null; echo rc=$?")
    assert r.stdout.endswith(b"rc=126\n")


@pytest.mark.parametrize("args", [["true"], ["printf", ""], ["a", "", "b", ""]])
def test_encode_matches_qvm_run(engine_daemon, args):
    """qvm-run's own encoding, seen by the service as $1, is Qubes' encoding."""
    d = engine_daemon
    # a user service in the qube prints the argument it got
    r = qvm_run(d, "-p", "--user", "root", "a",
                "mkdir -p /etc/qubes-rpc && printf '#!/bin/sh\\nprintf %%s \"$1\"\\n' "
                "> /etc/qubes-rpc/qubes.VMExec && chmod +x /etc/qubes-rpc/qubes.VMExec")
    assert r.returncode == 0, r.stderr
    r = qvm_run(d, "-p", "a", *args) if len(args) > 1 else qvm_run(d, "-p", "--no-shell", "a", *args)
    assert r.stdout.decode() == encode(args), r.stderr
