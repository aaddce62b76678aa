"""runtimed's built-in plugins: log drivers and volume drivers.

They register through the same entry points a third-party package would use
(`runtimed.log_drivers`, `runtimed.volume_drivers`, see pyproject.toml), and
are loaded only where and when they are needed.
"""
