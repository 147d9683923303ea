"""Receive: packages enter here (command line, and later SFTP, drop folder, HTTPS pull)."""
