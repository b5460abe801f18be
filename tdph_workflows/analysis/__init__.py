"""Campaign analysis (paper Figs. 3, 4A-C): trends, random-forest models, screening, report."""
