"""runtimed's log drivers that talk to receivers: syslog, fluentd, awslogs.

Each module exposes a plugin object registered under the `runtimed.log_drivers`
entry point (pyproject.toml); the interface is described in
runtimed_shim.logdriver. The file drivers (json-file, local, cri, none) are in
runtimed_shim.filedrivers, which every shim has loaded already. Module tops
import only the standard library: the daemon imports them to validate options,
and a shim imports only the one its container uses.
"""
