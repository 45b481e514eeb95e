"""`python -m replicate.report <dir>`: the paper's tables from run directories (see `replicate.report.write`)."""
