"""On a kernel without nftables connection counting (`ct count`), qubes still start and
network: the limits are skipped, said once in the log. BULKHEAD_NET_CT_COUNT=0 makes
bulkheadd take that path here (this kernel has connection counting: the same test
without the knob sees the limit tables, which is its positive control)."""
import subprocess

import pytest

from net_fixtures import Internet, Net, WEB


def tables(net, qube):
    qid = int(net.prop(qube, "qid"))
    ns = net.d.runtime / "net" / f"q{qid}"
    r = subprocess.run(["nsenter", f"--net={ns}", "nft", "list", "tables"], capture_output=True, text=True, timeout=30)
    return r.stdout


def peer_chains(internet):
    return internet.exec(internet.inet, "nft", "list", "ruleset").stdout


@pytest.mark.parametrize("counting", [True, False])
def test_qubes_network_without_connection_counting(tmp_path, counting):
    internet = Internet()
    try:
        net = Net(tmp_path, internet, env={} if counting else {"BULKHEAD_NET_CT_COUNT": "0"})
        try:
            net.d.call("admin.vm.Start", "work")
            assert net.curl("work", f"http://{WEB}:8080/")
            has_cap = "bulkhead_cap" in tables(net, "work") and "bulkhead_cap" in tables(net, "sys-firewall")
            peer_cap = "ct count" in peer_chains(internet)
            log = net.d.log.read_text()
            warned = log.count("connection counting (ct count) is not available")
            if counting:
                assert has_cap and peer_cap and warned == 0, (has_cap, peer_cap, warned)
            else:
                assert not has_cap and not peer_cap, (has_cap, peer_cap)
                assert warned == 1, log  # once, not per qube
        finally:
            net.close()
    finally:
        internet.close()
