"""Fixtures for the policy tools' tests: a private policy directory, a system-info
file, and runners for qrexec-policy-lint and qrexec-policy-test."""
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_POLICY = REPO / "data" / "policy.d"

SYSTEM_INFO = """\
# name class key=value...
dom0 AdminVM
work AppVM state=Running tags=work default_dispvm=default-dvm uuid=11111111-2222-3333-4444-555555555555
personal AppVM state=Halted tags=personal default_dispvm=default-dvm
vault AppVM state=Halted
mgmt AppVM state=Running
default-dvm AppVM template_for_dispvms=yes
disp7 DispVM template=default-dvm state=Running
fedora TemplateVM
"""


class PolicyEnv:
    def __init__(self, build_dir, root):
        self.build = pathlib.Path(build_dir)
        self.root = root
        self.dir = root / "policy.d"
        self.dir.mkdir(parents=True)
        self.sysinfo = root / "system-info"
        self.sysinfo.write_text(SYSTEM_INFO)

    def tool(self, name):
        path = self.build / "src" / "qrexec" / "policy" / name
        if not path.exists():
            pytest.skip(f"{name} not built")
        return str(path)

    def write(self, name, text, mode="w"):
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def install_defaults(self):
        shutil.rmtree(self.dir)
        shutil.copytree(DEFAULT_POLICY, self.dir)

    def lint(self, *args):
        return subprocess.run([self.tool("qrexec-policy-lint"), "--policy-dir", str(self.dir), *args],
                              capture_output=True, text=True, timeout=30)

    def test(self, source, target, service, *extra):
        r = subprocess.run([self.tool("qrexec-policy-test"), "--policy-dir", str(self.dir),
                            "--system-info", str(self.sysinfo), *extra, source, target, service],
                           capture_output=True, text=True, timeout=30)
        fields = {}
        for line in r.stdout.splitlines():
            key, _, value = line.partition(": ")
            fields[key] = value
        r.fields = fields
        return r


@pytest.fixture
def policy_env(build_dir, tmp_path):
    return PolicyEnv(build_dir, tmp_path)
