"""Example strategies (entry points ``meanrev`` and ``pinger``); they trade the simulator."""
