"""Cgroups for a rootless runtime: the delegated subtree, limits, usage, freezing.

hierarchy.py finds what we may use; manager.py makes and removes a cgroup per
container (v1.py / v2.py write the files of each version); hook.py plugs that into
the container lifecycle; service.py updates, pauses and unpauses; source.py feeds
core.stats; resources.py and units.py hold Docker's model and syntax.
"""
