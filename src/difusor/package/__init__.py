"""Package: archive safety, checksums, corte time; a verified package's files and corte."""
