"""The IB Gateway simulator: a broker, and TWS API gateway front ends real clients use."""
