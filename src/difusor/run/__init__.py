"""``difusor run``: the receivers, the publisher and the web server, supervised together."""
