"""Rail sidecars: processes that take work chunks from a rail's queue and execute them on that rail."""
