"""Helpers shared by test modules. No test module imports another: what several need is here."""
