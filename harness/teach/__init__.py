"""`crossgrad explain`: side-by-side pages of the four implementations, and the mistakes gallery.

Above the report room: it runs checks through api.py and reads the source files of impls/."""
