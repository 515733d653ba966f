"""Engines that execute kernel programs. SimPy is imported only inside this package."""
