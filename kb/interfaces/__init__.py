"""How people reach kb: the command line and the web server."""
