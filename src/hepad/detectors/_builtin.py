"""Imports every module that registers detectors."""
