"""Serve: the embedded web server and the header policy it shares with the nginx config."""
