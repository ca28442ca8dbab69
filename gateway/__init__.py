"""One IB gateway: container spec, runtime port, auth-log parsing, API probe, and the simulator."""
