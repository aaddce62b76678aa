"""runtimed's log drivers: json-file, local, cri, none, syslog, fluentd, awslogs.

Each module exposes plugin objects registered under the `runtimed.log_drivers`
entry point (pyproject.toml); the interface is described in
runtimed_shim.logdriver. Module tops import only the standard library: the
daemon imports them to validate options, and a shim imports only the one its
container uses.
"""
