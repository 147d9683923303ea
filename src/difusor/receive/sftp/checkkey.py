"""The difusor's own SFTP identity for the throughput check (convocatoria II.1.d, ≥ 40 MB/s).

``difusor check`` and ``difusor probe --sftp-speed`` upload a test file through the real receiver
with this key pair, ``state/keys/check_ed25519`` (+ ``.pub``), never with the authority's. The
receivers tell it apart and keep what it uploads away from the inbox:

- the embedded server (``login``) accepts it for ``[sftp] user`` besides ``authorized_keys`` and
  gives its sessions a scratch folder of their own (``scratch``);
- OpenSSH (``openssh``) lists it in a second ``AuthorizedKeysFile`` with ``restrict``; the check
  writes into ``<chroot>/verificacion``, beside ``entrada/``, which no watcher looks at.

Why not a ``.part`` inside ``entrada/``, deleted afterwards: OpenSSH carries out a standard SFTP
rename as link + unlink, so the drop-folder watcher reads "a temporary name was closed, then
deleted" as the second half of a rename and takes the final name created in between — which,
if the authority is just then uploading straight to a final name, is a file still being written.
sshd cannot confine one key of an account to a folder (``ForceCommand`` overrides a key's
``command=``), so the check key *could* write into ``entrada/``; it is the difusor's own, 0600 in
its state folder. A separate account would confine it fully.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from difusor.config import Config
from difusor.paths import write_private

CHECK_KEY_NAME = "check_ed25519"
CHECK_COMMENT = "difusor-verificacion"
# The scratch folder a check writes into, as the client names it: the same path on both receivers
# (OpenSSH: <chroot>/verificacion, beside entrada/; embedded: inside the session's scratch).
CHECK_FOLDER = "verificacion"


def check_key_path(cfg: Config) -> Path:
    """Where the private key lives (it may not exist yet)."""
    return cfg.state_dir / "keys" / CHECK_KEY_NAME


def check_public_path(cfg: Config) -> Path:
    return check_key_path(cfg).with_name(CHECK_KEY_NAME + ".pub")


def check_key(cfg: Config) -> Path:
    """The private key's path, the pair generated (0600, folder 0700) if missing."""
    path = check_key_path(cfg)
    pub = check_public_path(cfg)
    if path.exists() and pub.exists():
        return path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=CHECK_COMMENT)
    write_private(path, key.export_private_key(), 0o600)  # OpenSSH format: the sftp binary reads it
    write_private(pub, key.export_public_key(), 0o644)
    _give_to_state_owner(cfg, [path.parent, path, pub])
    return path


def check_public_line(cfg: Config) -> str | None:
    """The public key as one ``type base64`` line, or None when there is none (or it is broken:
    then nobody logs in with it, which is the safe side)."""
    try:
        text = check_public_path(cfg).read_text("utf-8", "replace")
        key = asyncssh.import_public_key(text)
    except (OSError, asyncssh.KeyImportError, ValueError):
        return None
    return " ".join(key.export_public_key("openssh").decode("ascii").split()[:2])


def check_authorized_keys(cfg: Config) -> Path:
    """``state/keys/check_ed25519.authorized_keys``: the key with ``restrict`` (no forwarding,
    no TTY), for sshd's second ``AuthorizedKeysFile``. Generates the key pair if missing."""
    check_key(cfg)
    line = check_public_line(cfg)
    if line is None:
        raise OSError(f"no puedo leer {check_public_path(cfg)}")
    target = check_key_path(cfg).with_name(CHECK_KEY_NAME + ".authorized_keys")
    text = f"restrict {line} {CHECK_COMMENT}\n"
    try:
        if target.read_text() == text:
            return target
    except OSError:
        pass
    write_private(target, text.encode(), 0o644)
    _give_to_state_owner(cfg, [target])
    return target


def _give_to_state_owner(cfg: Config, paths: list[Path]) -> None:
    """``sftp-config --apply`` runs as root: the key must stay readable by the difusor's account
    (the owner of the state folder), or ``difusor check`` could not use it."""
    if os.geteuid() != 0:
        return
    try:
        st = cfg.state_dir.stat()
    except OSError:
        return
    if st.st_uid == 0:
        return
    for p in paths:
        os.chown(p, st.st_uid, st.st_gid)
