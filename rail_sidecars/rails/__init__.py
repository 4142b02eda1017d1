"""Rail plugins: the Rail interface (base.py) with one module per rail."""
