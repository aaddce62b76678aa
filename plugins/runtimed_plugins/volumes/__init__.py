"""Built-in volume drivers (registered under the `runtimed.volume_drivers` entry point)."""
