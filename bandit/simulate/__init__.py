"""Simulation: synthetic users and worlds, the arena that runs policies against them."""
