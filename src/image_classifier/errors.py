"""The user errors every stage and command may raise; their own module so the stage shell
(cli.py) does not pull the folder scanner into the import closure, and so the `deps` of
train, evaluate and export in dvc.yaml."""


class DataError(ValueError):
    """The data given cannot be used: the image folder, a file the user gave or a service
    it named; the message names it and what is wrong."""


class MissingFileError(FileNotFoundError):
    """A file the command needs is not there; the message names it and what makes it. A plain
    FileNotFoundError is a bug of ours, and shows its traceback."""
