"""One module per simulated CA: its routes, authentication, error shape and answers."""
