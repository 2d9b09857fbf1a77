"""Comparing: pairwise tensor errors, finite differences, structural zeros, curves and
branches, framework pitfalls, and the per-model results built from them."""
