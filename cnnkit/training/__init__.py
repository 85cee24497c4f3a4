"""Training with Lightning: ClassifierModule, the Trainer factory and fit()."""
