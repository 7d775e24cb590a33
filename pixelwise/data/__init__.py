"""Datasets and data formats used to train and evaluate pixelwise models."""
