"""pyward in other tools' processes: the pytest plugin (servers: issue #6)."""
