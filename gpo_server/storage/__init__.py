"""Storage: the SQLAlchemy schema (tables.py), migrations, and the Store that the service uses."""
