"""The ``carina`` command line: thin commands that call the layers below."""
