"""Datasets: registry, built-in synthetic sets, torchvision sets, folders, preprocessing.

Kept free of imports so that ``cnnkit.data.preprocess`` can be used by
predict/eval without pulling in Lightning or torchvision.
"""
