"""Cgroups: finding the controllers, and one parent cgroup per run that outlives NsJail's own.

NsJail puts a jail in `<parent>/NSJAIL.<pid>` and removes that cgroup when it reaps the jail,
taking its counters with it. So each run gets its own parent, `<cgroup_parent>/corral-<run>`,
created here before NsJail starts and removed after: the run's limits, peak memory, OOM events
and CPU time are read from it once NsJail is done, and its CPU quota (cores per second of wall
time, SandboxSettings.cpu_cores_per_job) is set on it.

    hierarchy.py  where the controllers are (HostCgroups) and what a run's cgroups offer
    detect.py     finding them at worker start, creating the parents
    v1.py         one run's cgroups on cgroup v1 (tested by `make test`)
    v2.py         one run's cgroups on cgroup v2 (tested by `make test-cgroup2`, in a VM)
    files.py      reading and writing cgroup files, killing a cgroup's tasks, removing a tree
"""
