"""`crossgrad pitfalls` and the causes of native partings: framework defaults switched on
one at a time (compare/pitfalls.py is the catalog; impls/README.md, "Native defaults",
lists the switches)."""
