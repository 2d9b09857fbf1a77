"""The one error type for bad user input, and the exit statuses every command uses."""

EXIT_OK, EXIT_DISAGREE, EXIT_BAD_INPUT = 0, 1, 2


# JAX's errors for a traced value used as a concrete one: a Python `if`, int() or np.asarray
TRACED = ("TracerBoolConversionError", "ConcretizationTypeError", "TracerIntegerConversionError",
          "TracerArrayConversionError")


def one_line(err):
    """An exception as one line: its type and the first line of its message (JAX and
    TensorFlow add paragraphs on where they traced, naming their own internals), with what
    to write instead for JAX's traced-value errors."""
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    hint = (" (a Python branch or NumPy call on a value jax.jit traces: use jnp.where, "
            "lax.cond or jnp)" if type(err).__name__ in TRACED else "")
    return f"{type(err).__name__}: {first}{hint}"


class InputError(Exception):
    """A spec, data file or option is malformed; the CLI prints str(err) and exits 2."""

    def __init__(self, file, field, message):
        self.file = str(file)
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self):
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.message}"
