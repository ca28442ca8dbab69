"""The strategy host: plugin contract, order path, safe state and failover."""
