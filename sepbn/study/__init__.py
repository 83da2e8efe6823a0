"""sepbn.study: grids of runs (variants x seeds) trained by `sepbn train` processes and tabled with paired statistics.

`spec` reads study files, `runner` runs the jobs (local processes or submitit), `evaluate_run`
scores one finished run, `table` / `report` build the table. The command is `sepbn.commands.study`;
the format and the statistics are in docs/study.md.
"""
