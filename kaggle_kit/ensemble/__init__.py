"""Ensembling run folders: OOF blend weights (`kit blend`), fold averaging (`kit merge --average-folds`)."""
