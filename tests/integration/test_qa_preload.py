"""QA regression: lowering or removing preload-dispvm-max removes the surplus preloaded
disposables (they are running qubes: left alone they hold memory forever)."""
from admin_fixtures import engine_daemon  # noqa: F401
from test_lifecycle import _preloaded
from waiting import wait_for


def test_lowering_preload_max_removes_surplus(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.property.Set+template_for_dispvms", "a", "True")
    d.call("admin.vm.feature.Set+preload-dispvm-max", "a", "2")
    assert wait_for(lambda: len(_preloaded(d)) == 2)
    d.call("admin.vm.feature.Set+preload-dispvm-max", "a", "1")
    assert wait_for(lambda: len(_preloaded(d)) == 1)
    d.call("admin.vm.feature.Remove+preload-dispvm-max", "a")
    assert wait_for(lambda: len(_preloaded(d)) == 0)
    # removed, not just halted: the last one may still be Dying (its Kill runs beside
    # the loop, longer under ASan), and then it must go
    assert wait_for(lambda: "class=DispVM" not in d.call("admin.vm.List")), d.call("admin.vm.List")
