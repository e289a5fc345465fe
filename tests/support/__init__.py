"""Shared pieces for wsse's tests: free ports, processes, memory readings."""
