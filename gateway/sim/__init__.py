"""The IB Gateway simulator: a broker and TWS API gateway front ends that real clients connect to."""
