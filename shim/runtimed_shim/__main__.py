"""`python -m runtimed_shim` is the launcher (see runtimed_shim.launcher)."""

from runtimed_shim.launcher import main

main()
