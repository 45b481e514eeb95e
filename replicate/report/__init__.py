"""`python -m replicate.report <dir>` (`replicate report`): the paper's tables from run directories.

Modules: `write` (report.md, report.csv, figures; what `__main__` runs), `runs` (one run directory as read:
`RunResult`, its status and compared quantities), `tables` (how each paper table is laid out and which row a
run is), `markdown` (number formatting, Markdown tables), `figures` (the PNGs), `authorship` (the report
overwrites only files it wrote), `spec_bench` and `wandb_report` (exports), `cpu_tables` (the CPU Tables 1
and 2 with their A100 projection)."""
