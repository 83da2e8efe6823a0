"""Command-line sub-commands of ``sepbn`` (see ``sepbn.cli``)."""
