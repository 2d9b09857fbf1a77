"""The one error type for bad user input: it names the file and the field."""


class InputError(Exception):
    """A spec or data file is malformed; the CLI prints str(err) and exits 2."""

    def __init__(self, file, field, message):
        self.file = str(file)
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self):
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.message}"
