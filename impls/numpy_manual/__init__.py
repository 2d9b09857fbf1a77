"""Hand-written backpropagation in NumPy: the reference the other three are checked against."""
