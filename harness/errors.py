"""The one error type for bad user input, and the exit statuses every command uses."""

EXIT_OK, EXIT_DISAGREE, EXIT_BAD_INPUT = 0, 1, 2


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
