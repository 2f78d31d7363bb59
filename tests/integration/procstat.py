"""/proc/<pid>/stat as the tests read it: the process's name and the fields after it
(fields[0] is the state, [1] the parent PID, [16] the nice value: proc(5)'s field n is
fields[n - 3]). The name is taken between the first "(" and the last ")", since a name
may itself hold spaces and parentheses."""
import os


def stat_of(pid):
    """(name, fields) of pid, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    return st[st.index("(") + 1:st.rindex(")")], st[st.rindex(")") + 2:].split()


def all_stats():
    """{pid: (name, fields)} of every process listed now."""
    out = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        s = stat_of(p)
        if s:
            out[int(p)] = s
    return out
