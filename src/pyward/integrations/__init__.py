"""pyward in other tools' processes: the pytest plugin."""
