"""The data error every stage may raise; its own module so the stage shell (cli.py) does not
pull the folder scanner into the import closure, and so the `deps` of train, evaluate and
export in dvc.yaml."""


class DataError(ValueError):
    """The image folder cannot give a usable dataset; the message names the folder or class."""
