# Stand-in for geni.rspec (see geni/__init__.py).
