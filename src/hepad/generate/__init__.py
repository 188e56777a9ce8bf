"""Event generation with Pythia 8, fastjet and a parameterised detector response."""
